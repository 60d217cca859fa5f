// A lambda that captures cannot travel to a worker: Pool::map must refuse it at compile time
// with a message that says to pass the captured state as arguments instead.
#include <mproc/mproc.hpp>

#include <vector>

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::Pool pool(1);
    int offset = 10;
    auto results = pool.map([offset](int x) { return x + offset; }, std::vector<int>{1, 2, 3});
    return static_cast<int>(results.size());
}
