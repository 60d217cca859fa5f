// queue_throughput: one child Process puts 200000 ints into a Queue and the parent gets them all.
// As in python_baseline.py, the timing starts just before the child starts and ends at the
// last get; -1 after the items plays the part of Python's None.

#include <string>

#include <mproc/mproc.hpp>

#include "bench.hpp"

namespace mproc_bench {

namespace {

constexpr int end_of_items = -1;

void produce(mproc::Queue<int> queue, int n) {
    for (int i = 0; i < n; ++i) queue.put(i);
    queue.put(end_of_items);
}

}  // namespace

Measurement queue_throughput(const Settings&) {
    constexpr int n = 200'000;
    mproc::Queue<int> queue;
    mproc::Process producer(produce, queue, n);
    int received = 0;
    bool in_order = true;
    const double elapsed = seconds([&] {
        producer.start();
        for (int item; (item = queue.get()) != end_of_items; ++received)
            in_order &= item == received;
    });
    producer.join();
    if (received != n || !in_order) {
        throw WrongResult("got " + std::to_string(received) + " items" +
                          (in_order ? "" : ", not in the order they were put"));
    }
    if (producer.exitcode() != 0) throw WrongResult("the producer did not exit cleanly");
    return {n / elapsed, "items/s"};
}

}  // namespace mproc_bench
