// Built against the installed mproc package by the InstalledPackageIsFoundByConsumer test.
#include <mproc/mproc.hpp>

#include <iostream>
#include <vector>

int square(int x) {
    return x * x;
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);

    mproc::Pool pool(2);
    const std::vector<int> squares = pool.map(square, std::vector<int>{1, 2, 3});

    for (int value : squares) std::cout << value << ' ';
    std::cout << '\n';
    if (squares != std::vector<int>{1, 4, 9}) {
        std::cerr << "consumer: expected 1 4 9\n";
        return 1;
    }
    return 0;
}
