#include "mproc/init.hpp"

#include <atomic>

#include "mproc/start_method.hpp"

namespace mproc {

namespace {
std::atomic<bool> init_called{false};
std::atomic<StartMethod> default_method{StartMethod::fork};
}  // namespace

void init(int, char**) { init_called.store(true); }

bool initialized() noexcept { return init_called.load(); }

void set_start_method(StartMethod method) noexcept { default_method.store(method); }

StartMethod get_start_method() noexcept { return default_method.load(); }

}  // namespace mproc
