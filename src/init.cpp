#include "mproc/init.hpp"

#include <atomic>

#include "mproc/start_method.hpp"
#include "worker/roles.hpp"

namespace mproc {

namespace {
std::atomic<bool> init_called{false};
std::atomic<StartMethod> default_method{StartMethod::fork};
}  // namespace

void init(int argc, char** argv) {
    init_called.store(true);
    detail::remember_arguments(argc, argv);
    if (auto spawned = detail::take_spawned_role()) {
        detail::serve_spawned_role(spawned->first, std::move(spawned->second));
    }
}

bool initialized() noexcept {
    return init_called.load();
}

void set_start_method(StartMethod method) noexcept {
    default_method.store(method);
}

StartMethod get_start_method() noexcept {
    return default_method.load();
}

}  // namespace mproc
