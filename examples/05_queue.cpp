// Step 5: share data both ways through queues. The parent feeds records into an input queue;
// long-lived workers take them, process them and put results into an output queue; the parent
// waits for the workers to finish, then reads every result.
#include <mproc/mproc.hpp>

#include <unistd.h>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

struct Order {
    std::string customer;
    int quantity = 0;
    double unit_price = 0;
    template <class Archive>
    void serialize(Archive& archive) {
        archive(customer, quantity, unit_price);
    }
};

struct Invoice {
    std::string customer;
    double total = 0;
    int worker_pid = 0;
    template <class Archive>
    void serialize(Archive& archive) {
        archive(customer, total, worker_pid);
    }
};

// Each worker lives until it takes an empty optional: the parent puts one per worker after the
// records, so every worker stops cleanly once the input is drained.
int process_orders(mproc::Queue<std::optional<Order>> orders, mproc::Queue<Invoice> invoices) {
    int handled = 0;
    while (std::optional<Order> order = orders.get()) {
        invoices.put({order->customer, order->quantity * order->unit_price, ::getpid()});
        ++handled;
    }
    return handled;
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    const std::size_t workers = 3;
    mproc::Queue<std::optional<Order>> orders;
    mproc::Queue<Invoice> invoices;

    const std::vector<Order> input{{"ada", 3, 2.5},  {"brian", 1, 10.0}, {"chen", 4, 0.75},
                                   {"dora", 2, 6.0}, {"eli", 10, 1.1},   {"fay", 5, 3.0}};
    for (const Order& order : input) orders.put(order);
    for (std::size_t i = 0; i < workers; ++i) orders.put(std::nullopt);

    mproc::Pool pool(workers);
    std::vector<mproc::AsyncResult<int>> running;
    for (std::size_t i = 0; i < workers; ++i) {
        running.push_back(pool.apply_async(process_orders, orders, invoices));
    }
    int handled = 0;
    for (auto& worker : running) handled += worker.get();  // waits for every worker to finish

    std::printf("%d orders handled by %zu workers\n", handled, workers);
    while (std::optional<Invoice> invoice = invoices.try_get()) {
        std::printf("  %-6s %7.2f  (worker %d)\n", invoice->customer.c_str(), invoice->total,
                    invoice->worker_pid);
    }
}
