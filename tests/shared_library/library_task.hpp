#pragma once

// A task that lives in a shared library the test program links, to show that a worker started
// by spawn finds functions outside the program's own executable.
int triple_in_library(int x);
