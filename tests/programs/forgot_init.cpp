// A program that uses the spawn start method but whose main forgets mproc::init. Its pool must
// fail with an error that says what to add, instead of multiplying or hanging.
#include <mproc/mproc.hpp>

#include <cstdio>
#include <vector>

int square(int x) {
    return x * x;
}

int main() {
    mproc::Pool pool(mproc::PoolOptions{.processes = 1, .start_method = mproc::StartMethod::spawn});
    try {
        pool.map(square, std::vector<int>{1, 2, 3});
        std::puts("unexpected: the map succeeded");
        return 1;
    } catch (const mproc::Error& error) {
        std::printf("the pool said: %s\n", error.what());
        return 0;
    }
}
