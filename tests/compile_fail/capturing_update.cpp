// A manager's update runs in the server process: a lambda that captures cannot travel there,
// and DictProxy::update must refuse it at compile time with a message that says what to do.
#include <mproc/mproc.hpp>

#include <optional>
#include <string>

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::Manager manager;
    auto counts = manager.dict<std::string, int>();
    int step = 2;
    counts.update("x", [step](std::optional<int> old) { return old.value_or(0) + step; });
}
