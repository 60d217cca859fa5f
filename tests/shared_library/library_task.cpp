#include "library_task.hpp"

int triple_in_library(int x) {
    return 3 * x;
}
