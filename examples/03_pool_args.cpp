// Step 3 of the guide: sending several arguments of different types to each task, and getting
// a result back from each.
//
// pool.starmap calls f(a, b, c) for each tuple {a, b, c}, like Python's Pool.starmap. Arguments
// and results are encoded and sent between processes, so each must be a value cereal can
// serialise (numbers, std::string, the standard containers, your own types with serialize()).

#include <unistd.h>
#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include <mproc/mproc.hpp>

std::string scale(const std::string& name, int count, double factor) {
    std::printf("worker pid %d got name=%s count=%d factor=%.2f\n", static_cast<int>(::getpid()),
                name.c_str(), count, factor);
    std::fflush(stdout);
    char result[128];
    std::snprintf(result, sizeof result, "%s: %d x %.2f = %.2f", name.c_str(), count, factor,
                  count * factor);
    return result;
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);

    const std::vector<std::tuple<std::string, int, double>> jobs = {
        {"apples", 3, 1.5},
        {"pears", 10, 0.25},
        {"plums", 7, 2.0},
        {"figs", 4, 0.75},
    };

    mproc::Pool pool(2);
    // The results come back in the order of the inputs, whichever worker ran each task.
    const std::vector<std::string> results = pool.starmap(scale, jobs);

    std::printf("parent pid %d received:\n", static_cast<int>(::getpid()));
    for (const std::string& r : results) std::printf("  %s\n", r.c_str());
}
