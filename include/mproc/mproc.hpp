#pragma once

// Everything mproc offers: #include <mproc/mproc.hpp>.

#include "mproc/async_result.hpp"
#include "mproc/callable.hpp"
#include "mproc/errors.hpp"
#include "mproc/init.hpp"
#include "mproc/manager.hpp"
#include "mproc/pipe.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/progress.hpp"
#include "mproc/queue.hpp"
#include "mproc/resources.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/start_method.hpp"
#include "mproc/sync.hpp"
