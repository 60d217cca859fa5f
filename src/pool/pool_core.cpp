#include "mproc/detail/pool_core.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mproc/detail/frame_buffer.hpp"
#include "mproc/detail/shared_region.hpp"
#include "mproc/pool.hpp"
#include "mproc/resources.hpp"
#include "os/cgroup.hpp"
#include "os/deadline.hpp"
#include "os/futex.hpp"
#include "os/process.hpp"
#include "os/system_error.hpp"
#include "pool/chunk.hpp"
#include "transport/socket_link.hpp"
#include "wire/payload_file_reuse.hpp"
#include "worker/launcher.hpp"
#include "worker/spawn.hpp"

namespace mproc::detail {

namespace {

// Chunks in flight per worker, at first and for chunks of middling length: one running and
// one waiting, so that a worker never waits for the pool between chunks.
constexpr std::size_t chunks_in_flight = 2;
// A worker that finishes its chunks faster than this gets up to max_chunks_in_flight: then a
// chunk costs less than the pool's round trip to send the next, and only a deeper pipeline
// keeps the worker busy and lets each system call carry many frames.
constexpr std::chrono::microseconds fast_chunk{100};
constexpr std::size_t max_chunks_in_flight = 64;
// A worker whose chunks take longer than this has one at a time: the pool's round trip to send
// the next (tens of microseconds) is then under 1 % of a chunk, and no chunk is committed to a
// worker while another may be free first, so that uneven long tasks spread as on a thread pool.
constexpr std::chrono::milliseconds slow_chunk{10};
// A piece cut from a batch holds as many tasks as the worker it goes to runs in about this
// time, by its measured time per task of that function, and at least one: long enough that
// quick tasks travel by the thousand per frame, short enough that results still stream back
// soon after their tasks ran, that the last pieces of a map end together on every worker, and
// that long tasks go one at a time to whichever worker is free. Under fast_chunk, so that a
// worker running such pieces keeps a deep pipeline.
constexpr std::chrono::microseconds piece_time{50};
static_assert(piece_time < fast_chunk, "pieces of quick tasks must count as fast chunks");
// A batch of apply_async calls takes no more tasks than a default chunk of map.
constexpr std::uint32_t max_batch_tasks = max_default_chunk;
// A chunk whose worker died this many times while none of its tasks was running fails: the
// worker dies of something in the chunk that is not a task of it.
constexpr int max_chunk_losses = 3;

std::string startup_failure(int exit_code, const char* what) {
    if (exit_code == exit_missing_init) {
        return std::string("mproc: a spawned ") + what +
               " could not serve because main() does not call mproc::init(argc, argv) first; "
               "add it as the first statement of main";
    }
    return std::string("mproc: a spawned ") + what + " could not start (exit code " +
           std::to_string(exit_code) + "); its standard error says why";
}

std::exception_ptr terminated_error() {
    return std::make_exception_ptr(
        StateError("mproc: the pool was terminated before this task finished"));
}

// A worker the pool killed on purpose, and the task it meant to stop: the task running when
// the worker died is that task's only if it is still the one running.
struct PoolKill {
    enum class Reason { timeout, cancel } reason;
    std::uint64_t sequence;
    std::uint32_t item;
};

// One worker as the collector sees it.
struct Worker {
    std::uint32_t slot = 0;
    pid_t pid = 0;
    UniqueFd pidfd;
    std::unique_ptr<Link> link;
    std::deque<Chunk> in_flight;
    std::size_t tasks_given = 0;
    std::size_t depth = chunks_in_flight;              // chunks it may have in flight, by its pace
    std::chrono::steady_clock::time_point busy_since;  // its last results, or its first chunk
    // Its time per task, by its last results (zero: not known yet), and what those tasks
    // were: their job, entry and function (see take_piece).
    std::chrono::nanoseconds task_time{0};
    std::weak_ptr<Job> paced_job;
    std::uint64_t paced_entry = 0;
    std::uint64_t paced_function = 0;
    bool stopping = false;  // told to stop: retired, or the pool is ending
    // Its end of the link has closed (it exited or is dying). Nothing more can come, so it
    // leaves the poll set, where it would be ready at once, for ever, until the launcher
    // reports its exit; a collector that polled it would spin and keep the launcher (and the
    // exiting worker) from the CPU that report needs.
    bool link_closed = false;
    std::optional<PoolKill> killed;
    // It sent `retiring` (over max_memory_per_child): it exits having begun none of the chunks
    // it still has in flight.
    bool retiring = false;
};

// The batch of a map's tasks that the workers take from the claim board, while one is open.
// Each worker free when it opens, or freed while tasks are left, is sent the whole batch
// (claim_chunk) and takes tasks from the board a few at a time until none is left, then sends
// the results of those it ran. So a worker never waits for the pool between tasks, no task is
// committed to a worker before it is free (the schedule of a thread pool), and the pool hears
// from each worker once per claim, not once per task. The claim closes when every worker sent
// it has answered or died and the board is empty; the tasks that died with a worker (taken,
// run, their results not sent) go out again then, as pieces.
struct Claim {
    Chunk batch;  // the tasks open for claims: a batch, its pieces already sent excluded
    std::uint64_t generation = 0;
    std::vector<bool> settled;  // by task of the batch: its result or error has gone to its job
    int losses = 0;             // workers lost in it with no task running (Chunk::losses)

    std::uint32_t tasks() const noexcept { return batch.tasks(); }
};

}  // namespace

struct PoolCore::Impl {
    enum class State { running, closed, terminating };

    std::size_t processes;
    std::size_t maxtasksperchild;
    std::optional<std::chrono::milliseconds> task_timeout;
    unsigned retries;
    std::uint64_t memory_limit;
    std::optional<BoundCall> initializer;
    std::uint64_t max_value_bytes;  // PoolOptions::max_value_bytes, resolved
    std::shared_ptr<SharedRegion> status_memory;
    std::optional<WorkerLauncher> launcher;
    UniqueFd wake;
    std::thread collector;

    // Shared with the threads that submit, under mutex.
    std::mutex mutex;
    State state = State::running;
    std::deque<Chunk> submitted;
    // The eventfd was written and the collector has not taken the submissions since: later
    // submissions need not write it again, which saves a system call per apply_async.
    bool wake_pending = false;
    // A result was cancelled since the collector last looked (PoolCore::tasks_cancelled).
    bool cancels_pending = false;
    bool joined = false;
    // The lazy inputs open (PoolCore::open_lazy_input).
    std::size_t lazy_inputs = 0;
    // Every worker has started, or none will: the constructor waits for it (see PoolCore).
    bool ready = false;
    std::condition_variable ready_cv;

    // The collector's own.
    std::deque<Chunk> pending;
    std::vector<std::optional<Worker>> workers;  // by slot
    std::vector<bool> launching;                 // by slot: asked for, not yet started
    std::uint64_t next_sequence = 1;
    bool woken = true;             // poll saw the eventfd readable
    bool cancel_scan = false;      // take_submissions found cancels_pending
    bool cancel_recheck = false;   // drop_cancelled left cancelled tasks in workers' hands
    bool cancels_seen = false;     // a result was ever cancelled
    std::vector<pollfd> poll_fds;  // poll_once's, kept to reuse their memory
    std::vector<std::uint32_t> poll_slots;
    std::exception_ptr broken;  // the initializer's error: no task can run
    bool shutting_down = false;
    std::optional<Claim> claim;
    std::uint64_t claims_opened = 0;
    // The OOM kills counted in the pool's cgroup when the last worker died (or the pool began):
    // a worker killed by SIGKILL as the count rises was most likely the OOM killer's.
    std::optional<std::uint64_t> oom_kills;

    explicit Impl(const PoolOptions& options);
    WorkerStatus& status(std::uint32_t slot) const {
        return reinterpret_cast<WorkerStatus*>(status_memory->data())[slot];
    }
    ClaimBoard& board() const {
        return *claim_board_in(status_memory->data(), status_memory->size());
    }

    void run();
    void wake_collector() const;
    State take_submissions();
    Chunk take_piece(const Worker& worker);
    static bool free_for_work(const Worker& worker);
    void open_claim();
    bool claim_has_tasks_left() const;
    bool claim_in_flight() const;
    void deliver_claimed(Worker& worker, const Frame& frame);
    void maybe_close_claim();
    template <class Settle>
    void settle_untaken(Settle settle);
    std::exception_ptr death_error(const Worker& worker, const ExitStatus& exit, unsigned runs = 1,
                                   bool out_of_memory = false) const;
    std::exception_ptr kill_error(PoolKill::Reason reason, pid_t pid) const;
    void lose_task(const Worker& worker, const ExitStatus& exit, const Chunk& chunk,
                   std::uint32_t task, std::uint32_t item, bool out_of_memory,
                   std::deque<Chunk>& resend);
    std::vector<bool> recover_recorded(const Worker& worker, const Chunk& chunk,
                                       std::uint32_t tasks, const std::vector<bool>* settled);
    void resend_unfinished(const Worker& worker, const ExitStatus& exit, const Chunk& chunk,
                           const std::vector<bool>& finished, int losses,
                           std::deque<Chunk>& resend);
    void lose_claim(Worker& worker, const ExitStatus& exit, bool out_of_memory);
    bool killed_by_oom(const ExitStatus& exit);
    void drop_cancelled();
    // SIGKILLs the worker to stop the task it is running now, for `reason`.
    void kill_for(Worker& worker, PoolKill kill);
    // True while a cancelled task of the worker's may still begin or run (see drop_cancelled).
    bool cancel_in_flight(Worker& worker);
    void skip_chunk(const Worker& worker, std::uint64_t sequence);
    void unskip_chunk(const Worker& worker, std::uint64_t sequence);
    void lose_launcher();
    bool pending_at_most(std::size_t pieces) const;
    void dispatch();
    void send_chunk(Worker& worker, Chunk chunk);
    void maybe_retire(Worker& worker);
    void maybe_shut_down(State state);
    bool awaits_lazy_input();
    int poll_timeout_ms() const;
    void poll_once(int timeout_ms);
    bool handle_launcher_events();
    void handle_started(WorkerLauncher::Event& event);
    void handle_exited(const WorkerLauncher::Event& event);
    void read_results(Worker& worker);
    void pace(Worker& worker, const std::vector<Frame>& frames);
    void deliver(Worker& worker, const Frame& frame);
    void handle_lost(Worker& worker, const ExitStatus& exit);
    void check_timeouts();
    bool has_work() const;
    void fail_everything(std::exception_ptr error);
    void mark_ready();
    // Under mutex: StateError unless the pool takes submissions. A lazy input opened before
    // close() still submits after it, until join() begins.
    void require_running(bool from_lazy_input = false) const {
        if (from_lazy_input && state == State::closed && !joined) return;
        if (state != State::running) {
            throw StateError("mproc: a task was submitted to a pool that was closed or terminated");
        }
    }
    void terminate_now();
    std::exception_ptr launcher_lost_error();
};

PoolCore::Impl::Impl(const PoolOptions& options)
    : processes(options.processes != 0 ? options.processes : process_cpu_count()),
      maxtasksperchild(options.maxtasksperchild),
      task_timeout(options.task_timeout),
      retries(options.retries),
      memory_limit(options.max_memory_per_child),
      initializer(options.initializer),
      max_value_bytes(resolve_max_payload_bytes(options.max_value_bytes)),
      workers(processes),
      launching(processes, false) {
    require_served_role_taken();
    const StartMethod method = options.start_method.value_or(get_start_method());
    if (task_timeout && task_timeout->count() <= 0) {
        throw StateError("mproc: task_timeout must be positive");
    }
    status_memory = SharedRegion::create(pool_memory_bytes(processes));
    new (&board()) ClaimBoard();
    board().workers = static_cast<std::uint32_t>(processes);
    for (std::size_t slot = 0; slot < processes; ++slot) {
        // Default-initialised, not value-initialised: the ResultArea stays the memfd's zeros.
        new (&status(slot)) WorkerStatus;
        if (task_timeout) status(slot).timed.store(1, std::memory_order_relaxed);
        status(slot).memory_limit.store(memory_limit, std::memory_order_relaxed);
        status(slot).max_value_bytes = max_value_bytes;
    }
    oom_kills = oom_kill_count();
    wake = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake) throw_system_error("eventfd");
    // The launcher is forked before the collector thread exists: it inherits no thread.
    launcher.emplace(method, status_memory, initializer ? &initializer->frame() : nullptr);
    for (std::uint32_t slot = 0; slot < processes; ++slot) {
        launcher->launch(slot);
        launching[slot] = true;
    }
    collector = std::thread([this] {
        try {
            run();
        } catch (...) {
            // Nothing the collector does should throw; if it does, fail loudly, not silently.
            {
                std::lock_guard lock(mutex);
                state = State::terminating;
            }
            launcher->kill_all();
            fail_everything(std::current_exception());
        }
        mark_ready();
    });
}

void PoolCore::Impl::wake_collector() const {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto written = ::write(wake.get(), &one, sizeof one);
}

PoolCore::Impl::State PoolCore::Impl::take_submissions() {
    if (std::exchange(woken, false)) {
        std::uint64_t count;
        [[maybe_unused]] auto read = ::read(wake.get(), &count, sizeof count);
    }
    std::lock_guard lock(mutex);
    wake_pending = false;
    cancel_scan |= std::exchange(cancels_pending, false);
    cancels_seen |= cancel_scan;
    while (!submitted.empty()) {
        if (broken) {
            submitted.front().fail(broken);
        } else {
            pending.push_back(std::move(submitted.front()));
        }
        submitted.pop_front();
    }
    return state;
}

Chunk PoolCore::Impl::take_piece(const Worker& worker) {
    Chunk& batch = pending.front();
    const FrameHeader header = batch.frame->header();
    // A pace measured on other tasks says nothing of these: until the worker's results tell,
    // one task at a time, so that long tasks spread over the workers as they would alone.
    // The tasks of a map are measured by their own map's results: a call may well give the
    // same function longer tasks than the call before it. apply_async calls, each batch a job
    // of its own, go by the pace of the same function.
    const bool measured = batch.gathering ? worker.paced_entry == header.entry &&
                                                worker.paced_function == header.function
                                          : !worker.paced_job.owner_before(batch.job) &&
                                                !batch.job.owner_before(worker.paced_job);
    std::size_t size = 1;
    if (worker.task_time.count() > 0 && measured) {
        size = std::max<std::size_t>(1, piece_time / worker.task_time);
    }
    // maxtasksperchild counts tasks: no piece takes the worker past it (dispatch sends
    // nothing to a worker that has reached it).
    if (maxtasksperchild != 0) size = std::min(size, maxtasksperchild - worker.tasks_given);
    const auto piece_tasks = static_cast<std::uint32_t>(std::min<std::size_t>(size, batch.tasks()));
    if (piece_tasks == batch.tasks() && batch.taken == 0) {
        Chunk whole = std::move(batch);
        pending.pop_front();
        whole.batch = false;
        mark_piece(whole);
        return whole;
    }
    Chunk piece = slice(batch, 0, piece_tasks);
    batch.taken += piece_tasks;
    batch.first_task += piece_tasks;
    if (batch.tasks() == 0) pending.pop_front();
    mark_piece(piece);
    return piece;
}

bool PoolCore::Impl::pending_at_most(std::size_t pieces) const {
    if (pending.size() > pieces) return false;
    // A batch may be cut into as many pieces as it has tasks.
    std::size_t most = 0;
    for (const Chunk& chunk : pending) most += chunk.batch ? chunk.tasks() : 1;
    return most <= pieces;
}

bool PoolCore::Impl::has_work() const {
    if (!pending.empty() || claim) return true;
    return std::any_of(workers.begin(), workers.end(),
                       [](const auto& worker) { return worker && !worker->in_flight.empty(); });
}

void PoolCore::Impl::run() {
    while (true) {
        const State state = take_submissions();
        if (state == State::terminating) return terminate_now();
        if (std::exchange(cancel_scan, false) || cancel_recheck) drop_cancelled();
        dispatch();
        if (launcher->gone()) {
            // Nothing can run any more; the loop stays to fail what is submitted until close,
            // and after it while an imap range may still submit.
            if (state == State::closed && !awaits_lazy_input()) return;
        } else {
            maybe_shut_down(state);
        }
        poll_once(poll_timeout_ms());
        if (!handle_launcher_events()) {
            // The launcher has exited: after a shutdown, as it should.
            if (shutting_down) return;
            lose_launcher();
        }
        check_timeouts();
    }
}

// The launcher failed to start or was killed (SIGKILL, the OOM killer), and its workers died
// with it (their death signal). The pool does not start another: under fork it would be a
// fork of a process that now runs threads (the collector's and the user's), the very hazard
// the launcher exists to avoid, and a launcher that was killed says the machine is in trouble.
// So the pool is broken: what was submitted fails with the launcher's error, and so does every
// later submission, at once (take_submissions), until the pool is closed or terminated.
void PoolCore::Impl::lose_launcher() {
    broken = launcher_lost_error();
    fail_everything(broken);
    for (auto& worker : workers) worker.reset();
    std::fill(launching.begin(), launching.end(), false);
}

bool PoolCore::Impl::free_for_work(const Worker& worker) {
    return !worker.stopping && !worker.link_closed && worker.in_flight.empty();
}

void PoolCore::Impl::open_claim() {
    Claim& opened = claim.emplace();
    opened.batch = std::move(pending.front());
    pending.pop_front();
    opened.generation = ++claims_opened;
    opened.settled.assign(opened.tasks(), false);
    // No worker holds a frame of an earlier claim (it closed once every one had answered), so
    // none can take from the board while it is reset.
    board().next.store(0, std::memory_order_relaxed);
    board().generation.store(opened.generation, std::memory_order_release);
}

bool PoolCore::Impl::claim_has_tasks_left() const {
    return claim && board().next.load(std::memory_order_relaxed) < claim->tasks();
}

// Whether a worker holds the claim's frame: it has neither answered nor died.
bool PoolCore::Impl::claim_in_flight() const {
    return std::any_of(workers.begin(), workers.end(), [](const auto& worker) {
        return worker && !worker->in_flight.empty() && worker->in_flight.front().claimed;
    });
}

void PoolCore::Impl::dispatch() {
    // A map's tasks of chunk size 1 open a claim when a worker is free for them and the pool's
    // one board is (maxtasksperchild counts each worker's tasks, which a claim cannot bound).
    const auto some_worker_free = [&] {
        return std::any_of(workers.begin(), workers.end(),
                           [](const auto& w) { return w && free_for_work(*w); });
    };
    if (!claim && !pending.empty() && pending.front().claimable && maxtasksperchild == 0 &&
        memory_limit == 0 && !broken && some_worker_free()) {
        open_claim();
    }
    if (claim_has_tasks_left()) {
        for (auto& worker : workers) {
            if (worker && free_for_work(*worker)) {
                send_chunk(*worker, claim_chunk(claim->batch, claim->generation));
            }
        }
    }
    // Round by round, one chunk per worker per round: a worker gets its second chunk only once
    // every worker has its first, so a few long tasks spread over every worker.
    // Chunks are kept back for workers still starting, who would otherwise find them queued
    // behind another worker's chunk.
    const auto starting =
        static_cast<std::size_t>(std::count(launching.begin(), launching.end(), true));
    std::size_t depth = 0;
    for (const auto& worker : workers) {
        if (worker) depth = std::max(depth, worker->depth);
    }
    // A slow worker (long tasks) gets none of the last chunks, one per worker, while it is
    // busy: they go to whichever worker is free first, so that the end of a map is not
    // committed to a worker that is still running a long task.
    const auto live = static_cast<std::size_t>(
        std::count_if(workers.begin(), workers.end(),
                      [](const auto& worker) { return worker && !worker->stopping; }));
    for (std::size_t round = 1; round <= depth && !pending.empty(); ++round) {
        for (auto& worker : workers) {
            if (pending.empty() || (round > 1 && pending_at_most(starting))) break;
            if (!worker || worker->stopping || worker->link_closed ||
                worker->in_flight.size() >= round) {
                continue;
            }
            // A claim keeps its worker busy until the board is empty; the pool hears from it
            // only then, and what it is sent next goes to it then.
            if (!worker->in_flight.empty() && worker->in_flight.front().claimed) continue;
            if (round > worker->depth) continue;
            const bool slow = worker->depth <= chunks_in_flight;
            if (round > 1 && slow && pending_at_most(starting + live)) continue;
            if (maxtasksperchild != 0 && worker->tasks_given >= maxtasksperchild) continue;
            if (pending.front().batch) {
                send_chunk(*worker, take_piece(*worker));
            } else {
                send_chunk(*worker, std::move(pending.front()));
                pending.pop_front();
            }
        }
    }
    for (auto& worker : workers) {
        if (worker && worker->link->has_unsent()) worker->link->flush();
    }
}

void PoolCore::Impl::send_chunk(Worker& worker, Chunk chunk) {
    stamp_sequence(chunk, next_sequence++);
    if (worker.in_flight.empty()) worker.busy_since = std::chrono::steady_clock::now();
    worker.tasks_given += chunk.tasks();
    worker.link->post(chunk.frame);
    worker.in_flight.push_back(std::move(chunk));
}

void PoolCore::Impl::maybe_retire(Worker& worker) {
    if (worker.stopping || !worker.in_flight.empty()) return;
    const bool used_up = maxtasksperchild != 0 && worker.tasks_given >= maxtasksperchild;
    if (!used_up && !shutting_down && !broken) return;
    FrameWriter stop(FrameKind::stop, 0);
    worker.link->post(std::make_shared<Frame>(stop.finish()));
    worker.link->flush();
    worker.stopping = true;
}

void PoolCore::Impl::maybe_shut_down(State state) {
    if (shutting_down || state != State::closed || has_work() || awaits_lazy_input()) return;
    shutting_down = true;
    for (auto& worker : workers) {
        if (worker) maybe_retire(*worker);
    }
    launcher->shutdown();
}

// Whether an open lazy input may still submit after close(), or submitted chunks that
// take_submissions has not taken yet: the workers are still needed.
bool PoolCore::Impl::awaits_lazy_input() {
    std::lock_guard lock(mutex);
    return !submitted.empty() || (lazy_inputs > 0 && !joined);
}

int PoolCore::Impl::poll_timeout_ms() const {
    if (cancel_recheck) return 5;
    if (!task_timeout || !has_work()) return -1;
    // Often enough to catch a task soon after its deadline, rarely enough to cost nothing.
    return static_cast<int>(std::clamp<long long>(task_timeout->count() / 10, 5, 100));
}

void PoolCore::Impl::poll_once(int timeout_ms) {
    auto& fds = poll_fds;
    auto& slots = poll_slots;
    // A launcher that is gone would be readable (hung up) for ever; poll skips a negative fd.
    fds.assign({{wake.get(), POLLIN, 0}, {launcher->gone() ? -1 : launcher->poll_fd(), POLLIN, 0}});
    slots.clear();
    for (auto& worker : workers) {
        if (!worker || worker->link_closed) continue;
        const short events = POLLIN | (worker->link->has_unsent() ? POLLOUT : 0);
        fds.push_back({worker->link->poll_fd(), events, 0});
        slots.push_back(worker->slot);
    }
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0) {
        if (errno == EINTR) return;
        throw_system_error("poll");
    }
    woken = fds[0].revents != 0;
    for (std::size_t i = 0; i < slots.size(); ++i) {
        const short revents = fds[i + 2].revents;
        if (revents == 0) continue;
        auto& worker = workers[slots[i]];
        if (!worker) continue;
        if ((revents & POLLOUT) != 0) worker->link->flush();
        if ((revents & (POLLIN | POLLHUP | POLLERR)) != 0) read_results(*worker);
    }
}

void PoolCore::Impl::read_results(Worker& worker) {
    std::vector<Frame> frames;
    try {
        if (!worker.link->receive_ready(frames)) worker.link_closed = true;
    } catch (const SerializationError&) {
        // The worker sent bytes that are not frames: it cannot be trusted with more work. Its
        // death, reported by the launcher, hands its chunks on.
        signal_pidfd(worker.pidfd, SIGKILL);
    }
    if (!frames.empty()) pace(worker, frames);
    for (const Frame& frame : frames) deliver(worker, frame);
    maybe_retire(worker);
}

void PoolCore::Impl::pace(Worker& worker, const std::vector<Frame>& frames) {
    // The worker was busy from busy_since until now (it had chunks in flight all along), so
    // this is its time per chunk, queueing in the transport included.
    const auto now = std::chrono::steady_clock::now();
    const bool fast = now - worker.busy_since < fast_chunk * frames.size();
    const bool slow = now - worker.busy_since > slow_chunk * frames.size();
    worker.depth = fast ? max_chunks_in_flight : slow ? 1 : chunks_in_flight;
    const std::size_t done = std::min(frames.size(), worker.in_flight.size());
    // The tasks run, which a piece ended early (deliver) has fewer of than it was sent with.
    std::size_t tasks_done = 0;
    for (const Frame& frame : frames) tasks_done += frame.header().item_count;
    if (done > 0 && tasks_done > 0) {
        // Per-frame costs count in: a worker given one quick task at a time looks slower than
        // it is, and its pieces grow, by about piece_time over those costs, at each result.
        const Chunk& last_chunk = worker.in_flight[done - 1];
        const FrameHeader last = last_chunk.frame->header();
        worker.task_time = std::max<std::chrono::nanoseconds>(
            std::chrono::nanoseconds{1}, (now - worker.busy_since) / tasks_done);
        worker.paced_job = last_chunk.job;
        worker.paced_entry = last.entry;
        worker.paced_function = last.function;
    }
    worker.busy_since = now;
}

void PoolCore::Impl::deliver(Worker& worker, const Frame& frame) {
    if (frame.kind() == FrameKind::init_failed) {
        try {
            ItemReader items(frame.payload());
            decode_result<void>(items.next());
            broken = std::make_exception_ptr(Error("mproc: a worker's initializer failed"));
        } catch (...) {
            broken = std::current_exception();
        }
        fail_everything(broken);
        return;
    }
    if (frame.kind() == FrameKind::retiring) {
        worker.retiring = true;
        worker.stopping = true;
        return;
    }
    if (!worker.in_flight.empty() && worker.in_flight.front().claimed) {
        return deliver_claimed(worker, frame);
    }
    const FrameHeader header = frame.header();
    if (frame.kind() == FrameKind::skipped && !worker.in_flight.empty() &&
        worker.in_flight.front().sequence == header.sequence) {
        // Cancelled before it began: its results were settled when it was cancelled.
        unskip_chunk(worker, header.sequence);
        worker.in_flight.pop_front();
        return;
    }
    const bool block = frame.kind() == FrameKind::result_block;
    if ((frame.kind() != FrameKind::result && !block) || worker.in_flight.empty() ||
        worker.in_flight.front().sequence != header.sequence) {
        signal_pidfd(worker.pidfd, SIGKILL);  // out of step with the pool: see read_results
        return;
    }
    Chunk chunk = std::move(worker.in_flight.front());
    worker.in_flight.pop_front();
    unskip_chunk(worker, chunk.sequence);  // marked too late: the worker had begun it
    if (block) {
        // A piece the worker ended early (run_block_chunk): its tasks not run go out again
        // first, as a batch of their own.
        const bool ended_early = header.item_count > 0 && header.item_count < chunk.tasks() &&
                                 (chunk.frame->header().flags & piece_of_batch) != 0;
        const std::uint32_t ran = ended_early ? header.item_count : chunk.tasks();
        if (ended_early) {
            Chunk rest = slice(chunk, ran, chunk.tasks());
            rest.batch = true;
            worker.tasks_given -= rest.tasks();
            pending.push_front(std::move(rest));
        }
        try {
            if (header.item_count != ran) {
                throw SerializationError("mproc: a worker sent a block of results for " +
                                         std::to_string(header.item_count) + " tasks, not " +
                                         std::to_string(ran));
            }
            chunk.job->deliver_block(chunk.first_task, ran, frame.payload());
        } catch (...) {
            for (std::uint32_t task = 0; task < ran; ++task) {
                chunk.job->fail(chunk.first_task + task, std::current_exception());
            }
        }
        return;
    }
    FdInbox inbox(frame.fds);
    FdInboxScope scope(inbox);
    ItemReader items(frame.payload());
    for (std::uint32_t task = 0; task < chunk.tasks(); ++task) {
        try {
            if (task >= header.item_count) {
                throw SerializationError("mproc: a worker sent fewer results than it had tasks");
            }
            chunk.job->deliver(chunk.first_task + task, items.next());
        } catch (...) {
            chunk.job->fail(chunk.first_task + task, std::current_exception());
        }
    }
}

// Takes every task of the claim that no worker has taken, so that none will, and hands each
// to settle(task): a claim that cannot run (its entry is missing, it kills its workers) ends.
template <class Settle>
void PoolCore::Impl::settle_untaken(Settle settle) {
    const std::uint32_t first = board().next.exchange(claim->tasks(), std::memory_order_relaxed);
    for (std::uint32_t task = first; task < claim->tasks(); ++task) {
        if (claim->settled[task]) continue;
        claim->settled[task] = true;
        settle(task);
    }
}

void PoolCore::Impl::deliver_claimed(Worker& worker, const Frame& frame) {
    const FrameHeader header = frame.header();
    const auto payload = frame.payload();
    if (frame.kind() == FrameKind::result && worker.in_flight.front().sequence == header.sequence &&
        header.item_count == claim->tasks()) {
        // The worker could not find the claim's entry (run_frame) and failed each task with
        // that error: the tasks nobody has taken fail with it; those taken run where they are.
        std::vector<std::span<const std::byte>> items;
        try {
            ItemReader reader(payload);
            while (items.size() < header.item_count) items.push_back(reader.next());
        } catch (const SerializationError&) {
            signal_pidfd(worker.pidfd, SIGKILL);
            return;
        }
        const Chunk chunk = std::move(worker.in_flight.front());
        worker.in_flight.pop_front();
        settle_untaken(
            [&](std::uint32_t task) { chunk.job->deliver(chunk.first_task + task, items[task]); });
        return maybe_close_claim();
    }
    const std::size_t trailer = std::size_t{header.item_count} * sizeof(std::uint32_t);
    if (frame.kind() != FrameKind::result_block || (header.flags & claimed_from_board) == 0 ||
        worker.in_flight.front().sequence != header.sequence || payload.size() < trailer) {
        signal_pidfd(worker.pidfd, SIGKILL);  // out of step with the pool: see read_results
        return;
    }
    std::vector<std::uint32_t> tasks(header.item_count);
    if (trailer != 0) std::memcpy(tasks.data(), payload.data() + payload.size() - trailer, trailer);
    // Each a task of the claim that nobody has settled, once: then they can be settled here.
    std::size_t checked = 0;
    while (checked < tasks.size() && tasks[checked] < claim->tasks() &&
           !claim->settled[tasks[checked]]) {
        claim->settled[tasks[checked++]] = true;
    }
    if (checked < tasks.size()) {
        for (std::size_t k = 0; k < checked; ++k) claim->settled[tasks[k]] = false;
        signal_pidfd(worker.pidfd, SIGKILL);
        return;
    }
    Chunk chunk = std::move(worker.in_flight.front());
    worker.in_flight.pop_front();
    try {
        chunk.job->deliver_claimed(chunk.first_task, tasks,
                                   payload.first(payload.size() - trailer));
    } catch (...) {
        for (std::uint32_t task : tasks)
            chunk.job->fail(chunk.first_task + task, std::current_exception());
    }
    maybe_close_claim();
}

void PoolCore::Impl::maybe_close_claim() {
    if (!claim || claim_in_flight() || claim_has_tasks_left()) return;
    // Every task was taken, and every worker that took some has answered or died. Those that
    // died with a worker after they ran go out again, in order, as pieces.
    const Claim closed = std::move(*claim);
    claim.reset();
    if (closed.batch.job->cancelled(closed.batch.first_task)) return;  // a map's: all of it
    std::deque<Chunk> lost;
    for (std::uint32_t begin = 0; begin < closed.tasks();) {
        std::uint32_t end = begin;
        while (end < closed.tasks() && !closed.settled[end]) ++end;
        if (end > begin) {
            Chunk rest = slice(closed.batch, begin, end);
            rest.batch = true;
            lost.push_back(std::move(rest));
        }
        begin = end + 1;
    }
    pending.insert(pending.begin(), std::make_move_iterator(lost.begin()),
                   std::make_move_iterator(lost.end()));
}

bool PoolCore::Impl::handle_launcher_events() {
    while (auto event = launcher->next_event()) {
        switch (event->kind) {
            case WorkerLauncher::Event::Kind::started:
                handle_started(*event);
                break;
            case WorkerLauncher::Event::Kind::exited:
                handle_exited(*event);
                break;
            case WorkerLauncher::Event::Kind::gone:
                return false;
        }
    }
    return true;
}

void PoolCore::Impl::handle_started(WorkerLauncher::Event& event) {
    if (event.slot >= workers.size()) return;
    launching[event.slot] = false;
    if (std::find(launching.begin(), launching.end(), true) == launching.end()) mark_ready();
    Worker& worker = workers[event.slot].emplace();
    worker.slot = event.slot;
    worker.pid = event.pid;
    worker.pidfd = open_pidfd(event.pid);
    worker.link = std::make_unique<SocketLink>(std::move(event.socket), max_value_bytes);
    if (shutting_down || broken) maybe_retire(worker);
}

void PoolCore::Impl::handle_exited(const WorkerLauncher::Event& event) {
    if (event.slot >= workers.size()) return;
    auto& slot = workers[event.slot];
    if (!slot || slot->pid != event.pid) return;
    read_results(*slot);  // what it sent before it died still counts
    if (!slot->in_flight.empty()) handle_lost(*slot, event.status);
    slot.reset();
    // The slot's next worker starts with no chunk skipped.
    WorkerStatus& status = this->status(event.slot);
    for (auto& entry : status.skipped) entry.store(0, std::memory_order_relaxed);
    status.skipped_count.store(0, std::memory_order_release);
    if (!broken &&
        (event.status.exit_code == exit_missing_init ||
         event.status.exit_code == exit_bootstrap_failed) &&
        event.status.signal == 0) {
        // A spawned worker that could not start will not start next time either.
        broken = std::make_exception_ptr(Error(startup_failure(event.status.exit_code, "worker")));
        fail_everything(broken);
    }
    const bool wanted = !broken && !shutting_down;
    if (wanted && !launching[event.slot]) {
        launcher->launch(event.slot);
        launching[event.slot] = true;
    }
}

std::exception_ptr PoolCore::Impl::kill_error(PoolKill::Reason reason, pid_t pid) const {
    if (reason == PoolKill::Reason::cancel) {
        return std::make_exception_ptr(CancelledError("mproc: the task was cancelled"));
    }
    return std::make_exception_ptr(
        TimeoutError("mproc: the task ran longer than the pool's task_timeout of " +
                     std::to_string(task_timeout->count()) + " ms; its worker " +
                     std::to_string(pid) + " was killed and replaced"));
}

bool PoolCore::Impl::killed_by_oom(const ExitStatus& exit) {
    if (exit.signal != SIGKILL) return false;
    const auto count = oom_kill_count();
    const bool rose = count && oom_kills && *count > *oom_kills;
    if (count) oom_kills = count;
    return rose;
}

// Task `task` of chunk was running when its worker died: it fails, or (with retries, or when
// the pool's kill was meant for another task) goes out again, alone, at the end of `resend`.
void PoolCore::Impl::lose_task(const Worker& worker, const ExitStatus& exit, const Chunk& chunk,
                               std::uint32_t task, std::uint32_t item, bool out_of_memory,
                               std::deque<Chunk>& resend) {
    // `item` is the task as the worker's status named it: for a claim, its index in the batch.
    const bool meant =
        worker.killed && worker.killed->sequence == chunk.sequence && worker.killed->item == item;
    if (meant)
        return chunk.job->fail(chunk.first_task + task,
                               kill_error(worker.killed->reason, worker.pid));
    // A kill meant for the task before it, which had just ended: this task did nothing wrong.
    const bool stray_kill = worker.killed.has_value();
    const unsigned runs = static_cast<unsigned>(chunk.runs) + 1;
    if (stray_kill || runs <= retries) {
        Chunk again = slice(chunk, task, task + 1);
        again.runs = stray_kill ? chunk.runs : static_cast<int>(runs);
        resend.push_back(std::move(again));
        return;
    }
    chunk.job->fail(chunk.first_task + task, death_error(worker, exit, runs, out_of_memory));
}

// Delivers the values that the worker recorded in its ResultArea for the first `tasks` tasks
// of chunk before it died, but for those `settled` already (a claim's); says which it did.
std::vector<bool> PoolCore::Impl::recover_recorded(const Worker& worker, const Chunk& chunk,
                                                   std::uint32_t tasks,
                                                   const std::vector<bool>* settled) {
    std::vector<bool> recovered(tasks, false);
    auto& areas = status(worker.slot).results;
    const auto found = std::find_if(std::begin(areas), std::end(areas), [&](ResultArea& area) {
        return std::atomic_ref(area.sequence).load(std::memory_order_acquire) == chunk.sequence;
    });
    if (found == std::end(areas)) return recovered;
    ResultArea& area = *found;
    std::vector<std::uint32_t> done;
    for (std::uint32_t task = 0; task < std::min(tasks, recorded_tasks); ++task) {
        if (std::atomic_ref(area.done[task]).load(std::memory_order_acquire) == 0) continue;
        if (settled != nullptr && (*settled)[task]) continue;
        recovered[task] = true;
        done.push_back(task);
    }
    if (done.empty()) return recovered;
    try {
        chunk.job->deliver_recorded(chunk.first_task, done,
                                    std::span<const std::byte>(area.values));
    } catch (const SerializationError&) {
        recovered.assign(tasks, false);  // not a job of numbers: its tasks run again
    }
    return recovered;
}

void PoolCore::Impl::lose_claim(Worker& worker, const ExitStatus& exit, bool out_of_memory) {
    // A claim is all a worker has in flight. The tasks whose values it recorded are settled
    // now; the task it was running fails (or runs again, with retries); the others it took go
    // out again when the claim closes.
    const WorkerStatus& status = this->status(worker.slot);
    const Chunk chunk = std::move(worker.in_flight.front());
    worker.in_flight.clear();
    const auto recovered = recover_recorded(worker, chunk, claim->tasks(), &claim->settled);
    for (std::uint32_t task = 0; task < claim->tasks(); ++task) {
        if (recovered[task]) claim->settled[task] = true;
    }
    const auto task = status.item.load(std::memory_order_relaxed);
    if (status.running.load(std::memory_order_acquire) != 0 &&
        status.sequence.load(std::memory_order_relaxed) == chunk.sequence &&
        task < claim->tasks() && !claim->settled[task]) {
        claim->settled[task] = true;
        Chunk culprit = slice(claim->batch, task, task + 1);
        culprit.sequence = chunk.sequence;
        std::deque<Chunk> resend;
        lose_task(worker, exit, culprit, 0, task, out_of_memory, resend);
        pending.insert(pending.begin(), std::make_move_iterator(resend.begin()),
                       std::make_move_iterator(resend.end()));
    } else if (++claim->losses >= max_chunk_losses) {
        // Workers die of the claim itself, not of a task: what is left of it fails.
        const auto error = death_error(worker, exit);
        settle_untaken(
            [&](std::uint32_t untaken) { chunk.job->fail(chunk.first_task + untaken, error); });
    }
    maybe_close_claim();
}

std::exception_ptr PoolCore::Impl::death_error(const Worker& worker, const ExitStatus& exit,
                                               unsigned runs, bool out_of_memory) const {
    return std::make_exception_ptr(
        WorkerLost(worker.pid, exit.exit_code, exit.signal, runs, out_of_memory));
}

void PoolCore::Impl::handle_lost(Worker& worker, const ExitStatus& exit) {
    auto& in_flight = worker.in_flight;
    if (cancels_seen) cancel_scan = true;  // chunks go back to the queue: drop cancelled ones
    if (worker.retiring) {
        // It retired after a chunk, over max_memory_per_child, and began none of these.
        pending.insert(pending.begin(), std::make_move_iterator(in_flight.begin()),
                       std::make_move_iterator(in_flight.end()));
        return in_flight.clear();
    }
    const bool out_of_memory = killed_by_oom(exit);
    if (in_flight.front().claimed) return lose_claim(worker, exit, out_of_memory);
    // The chunk the worker was in when it died. The chunks before it had ended, and the values
    // it recorded of them are delivered; their other results, held back to leave with later
    // ones (worker_loop.cpp), died with the worker: those tasks run again and count no loss.
    // The chunks after it had not begun.
    const WorkerStatus& status = this->status(worker.slot);
    const auto sequence = status.sequence.load(std::memory_order_relaxed);
    std::size_t current = 0;
    while (current < in_flight.size() && in_flight[current].sequence != sequence) ++current;
    const bool began = current < in_flight.size();
    if (!began) current = 0;  // it died before it began any
    std::deque<Chunk> resend;
    for (std::size_t i = 0; i < current; ++i) {
        const Chunk& ended = in_flight[i];
        resend_unfinished(worker, exit, ended,
                          recover_recorded(worker, ended, ended.tasks(), nullptr), ended.losses,
                          resend);
    }
    // Of the chunk it was in: the values it recorded are delivered; the task it was running,
    // if it had no value yet, is lost; the others run again.
    const Chunk& chunk = in_flight[current];
    auto finished = began ? recover_recorded(worker, chunk, chunk.tasks(), nullptr)
                          : std::vector<bool>(chunk.tasks(), false);
    const auto item = status.item.load(std::memory_order_relaxed);
    const bool task_running = began && status.running.load(std::memory_order_acquire) != 0 &&
                              item < chunk.tasks() && !finished[item];
    if (task_running) finished[item] = true;  // it is not sent again as it is
    // With no task running, the worker died of the chunk itself (or between its tasks): a
    // chunk that does so max_chunk_losses times fails, so that no chunk kills workers for ever.
    resend_unfinished(worker, exit, chunk, finished, chunk.losses + (task_running ? 0 : 1), resend);
    if (task_running) lose_task(worker, exit, chunk, item, item, out_of_memory, resend);
    for (std::size_t i = current + 1; i < in_flight.size(); ++i) {
        resend.push_back(std::move(in_flight[i]));
    }
    in_flight.clear();
    pending.insert(pending.begin(), std::make_move_iterator(resend.begin()),
                   std::make_move_iterator(resend.end()));
}

// The tasks of chunk not `finished` go out again, in runs of neighbours; or fail, once workers
// have died of it max_chunk_losses times.
void PoolCore::Impl::resend_unfinished(const Worker& worker, const ExitStatus& exit,
                                       const Chunk& chunk, const std::vector<bool>& finished,
                                       int losses, std::deque<Chunk>& resend) {
    for (std::uint32_t begin = 0; begin < chunk.tasks();) {
        std::uint32_t end = begin;
        while (end < chunk.tasks() && !finished[end]) ++end;
        if (end > begin) {
            Chunk part = begin == 0 && end == chunk.tasks() ? chunk : slice(chunk, begin, end);
            part.runs = chunk.runs;
            part.losses = losses;
            if (losses >= max_chunk_losses) {
                part.fail(death_error(worker, exit));
            } else {
                resend.push_back(std::move(part));
            }
        }
        begin = end + 1;
    }
}

namespace {

// Whether every task of the chunk was cancelled; `some` tells whether any was.
bool all_cancelled(const Chunk& chunk, bool* some = nullptr) {
    std::uint32_t cancelled = 0;
    for (std::uint32_t task = 0; task < chunk.tasks(); ++task) {
        cancelled += chunk.job->cancelled(chunk.first_task + task) ? 1 : 0;
    }
    if (some != nullptr) *some = cancelled > 0;
    return cancelled == chunk.tasks();
}

}  // namespace

// Results were cancelled (AsyncResult::cancel, an imap range destroyed early): their tasks not
// yet sent are dropped, those sent and not begun are skipped by their workers, and a worker
// running one is killed (and replaced, as for any death; its other chunks go elsewhere).
void PoolCore::Impl::drop_cancelled() {
    std::deque<Chunk> kept;
    for (Chunk& chunk : pending) {
        bool some = false;
        if (all_cancelled(chunk, &some)) continue;
        if (!some) {
            kept.push_back(std::move(chunk));
            continue;
        }
        // Calls of an apply_async batch, some cancelled: the others keep their places.
        for (std::uint32_t begin = 0; begin < chunk.tasks();) {
            std::uint32_t end = begin;
            while (end < chunk.tasks() && !chunk.job->cancelled(chunk.first_task + end)) ++end;
            if (end > begin) {
                Chunk part = slice(chunk, begin, end);
                part.batch = chunk.batch;
                part.runs = chunk.runs;
                part.losses = chunk.losses;
                kept.push_back(std::move(part));
            }
            begin = end + 1;
        }
    }
    pending = std::move(kept);
    if (claim && claim->batch.job->cancelled(claim->batch.first_task)) {
        settle_untaken([](std::uint32_t) {});
    }
    // A worker may be between two tasks, or begin a chunk just as it is marked skipped: while
    // any cancelled task is in a worker's hands, the collector looks again at each poll,
    // every few milliseconds (poll_timeout_ms), until it has been answered or killed.
    cancel_recheck = false;
    for (auto& worker : workers) {
        if (worker && !worker->in_flight.empty() && !worker->killed) {
            cancel_recheck |= cancel_in_flight(*worker);
        }
    }
    maybe_close_claim();
}

bool PoolCore::Impl::cancel_in_flight(Worker& worker) {
    const WorkerStatus& status = this->status(worker.slot);
    const PoolKill kill{PoolKill::Reason::cancel, status.sequence.load(std::memory_order_relaxed),
                        status.item.load(std::memory_order_relaxed)};
    const bool busy = status.running.load(std::memory_order_acquire) != 0;
    bool cancelled_left = false;
    for (const Chunk& chunk : worker.in_flight) {
        bool some = false;
        const bool all = all_cancelled(chunk, &some);
        if (!some) continue;
        cancelled_left = true;
        if (chunk.sequence == kill.sequence) {
            // The one it runs (a claim's task `item` is task `item` of the claim's batch).
            if (busy && (chunk.claimed || kill.item < chunk.tasks()) &&
                chunk.job->cancelled(chunk.first_task + kill.item)) {
                kill_for(worker, kill);
                return false;
            }
        } else if (chunk.sequence > kill.sequence && !chunk.claimed && all) {
            // Sequences grow as chunks are sent, and a worker runs them in order: it has not
            // begun this one.
            skip_chunk(worker, chunk.sequence);
        }
    }
    return cancelled_left;
}

void PoolCore::Impl::skip_chunk(const Worker& worker, std::uint64_t sequence) {
    WorkerStatus& status = this->status(worker.slot);
    for (auto& entry : status.skipped) {
        if (entry.load(std::memory_order_relaxed) == sequence) return;
    }
    for (auto& entry : status.skipped) {
        if (entry.load(std::memory_order_relaxed) != 0) continue;
        entry.store(sequence, std::memory_order_relaxed);
        status.skipped_count.fetch_add(1, std::memory_order_release);
        return;
    }
    // No room: the chunk runs, and its results are dropped.
}

void PoolCore::Impl::unskip_chunk(const Worker& worker, std::uint64_t sequence) {
    WorkerStatus& status = this->status(worker.slot);
    if (status.skipped_count.load(std::memory_order_relaxed) == 0) return;
    for (auto& entry : status.skipped) {
        if (entry.load(std::memory_order_relaxed) != sequence) continue;
        entry.store(0, std::memory_order_relaxed);
        status.skipped_count.fetch_sub(1, std::memory_order_relaxed);
    }
}

// The kill names the task the decision was about, read before it was made: should the worker
// have moved on to another task meanwhile, that task is not blamed (lose_task).
void PoolCore::Impl::kill_for(Worker& worker, PoolKill kill) {
    worker.killed = kill;
    signal_pidfd(worker.pidfd, SIGKILL);
}

void PoolCore::Impl::check_timeouts() {
    if (!task_timeout) return;
    const auto now = std::chrono::steady_clock::now().time_since_epoch();
    const auto limit = std::chrono::duration_cast<std::chrono::nanoseconds>(*task_timeout).count();
    for (auto& worker : workers) {
        if (!worker || worker->in_flight.empty() || worker->killed) continue;
        const WorkerStatus& status = this->status(worker->slot);
        const PoolKill kill{PoolKill::Reason::timeout,
                            status.sequence.load(std::memory_order_relaxed),
                            status.item.load(std::memory_order_relaxed)};
        if (status.running.load(std::memory_order_acquire) == 0) continue;
        const auto started = status.started_ns.load(std::memory_order_relaxed);
        if (std::chrono::nanoseconds(now).count() - started > limit) kill_for(*worker, kill);
    }
}

void PoolCore::Impl::fail_everything(std::exception_ptr error) {
    for (auto& chunk : pending) chunk.fail(error);
    pending.clear();
    if (claim) {
        for (std::uint32_t task = 0; task < claim->tasks(); ++task) {
            if (!claim->settled[task])
                claim->batch.job->fail(claim->batch.first_task + task, error);
        }
        claim.reset();
    }
    for (auto& worker : workers) {
        if (!worker) continue;
        // A claim's tasks were failed with the claim, each once.
        for (auto& chunk : worker->in_flight) {
            if (!chunk.claimed) chunk.fail(error);
        }
        worker->in_flight.clear();
    }
    {
        std::lock_guard lock(mutex);
        for (auto& chunk : submitted) chunk.fail(error);
        submitted.clear();
    }
    mark_ready();
}

void PoolCore::Impl::mark_ready() {
    {
        std::lock_guard lock(mutex);
        ready = true;
    }
    ready_cv.notify_all();
}

std::exception_ptr PoolCore::Impl::launcher_lost_error() {
    const ExitStatus exit = launcher->reap();
    if (exit.signal == 0 &&
        (exit.exit_code == exit_missing_init || exit.exit_code == exit_bootstrap_failed)) {
        return std::make_exception_ptr(Error(startup_failure(exit.exit_code, "launcher")));
    }
    return std::make_exception_ptr(
        Error("mproc: the pool's worker launcher process died; the pool cannot run tasks"));
}

void PoolCore::Impl::terminate_now() {
    launcher->kill_all();
    fail_everything(terminated_error());
    // Wait for the launcher to report that it and its workers are gone.
    bool gone = launcher->gone();
    while (!gone) {
        pollfd fd{launcher->poll_fd(), POLLIN, 0};
        if (::poll(&fd, 1, -1) < 0 && errno != EINTR) break;
        while (auto event = launcher->next_event()) {
            gone = event->kind == WorkerLauncher::Event::Kind::gone;
            if (gone) break;
        }
    }
    workers.clear();
}

PoolCore::PoolCore(const PoolOptions& options) : impl_(std::make_unique<Impl>(options)) {
    // As Python's Pool, the constructor returns with the workers started, so that the first
    // map does not wait for them: forked, and running (not their initializer). The wait is
    // bounded all the same, since a pool that is slow to start still works.
    {
        std::unique_lock lock(impl_->mutex);
        impl_->ready_cv.wait_for(lock, std::chrono::seconds(1), [&] { return impl_->ready; });
    }
    const Deadline deadline = Deadline::after(std::chrono::seconds(1));
    for (std::uint32_t slot = 0; slot < impl_->processes; ++slot) {
        std::atomic<std::uint32_t>& serving = impl_->status(slot).serving;
        while (serving.load() == 0 && futex_wait(serving, 0, deadline)) {
        }
    }
}

PoolCore::~PoolCore() {
    if (!impl_) return;
    {
        std::lock_guard lock(impl_->mutex);
        if (impl_->joined) return;
    }
    terminate();
}

void PoolCore::tasks_cancelled() noexcept {
    {
        std::lock_guard lock(impl_->mutex);
        impl_->cancels_pending = true;
    }
    impl_->wake_collector();
}

std::size_t PoolCore::processes() const noexcept {
    return impl_->processes;
}

void PoolCore::submit(const std::shared_ptr<Job>& job, std::span<Frame> frames,
                      std::size_t first_task, bool batch, bool from_lazy_input) {
    for (const auto& frame : frames) check_frame_size(frame, impl_->max_value_bytes);
    bool large = false;
    for (const auto& frame : frames) large |= lend_payload_file(frame);
    bool wake = false;
    {
        std::lock_guard lock(impl_->mutex);
        impl_->require_running(from_lazy_input);
        wake = !std::exchange(impl_->wake_pending, true);
        for (auto& frame : frames) {
            Chunk chunk;
            chunk.job = job;
            chunk.first_task = first_task;
            chunk.frame = std::make_shared<Frame>(std::move(frame));
            chunk.batch = batch;
            // Each worker in a claim is sent the whole batch: only small ones are claimed.
            chunk.claimable = batch && job->wants_results_together() &&
                              chunk.frame->header().payload_bytes <= large_frame_bytes;
            first_task += chunk.tasks();
            impl_->submitted.push_back(std::move(chunk));
        }
    }
    if (wake) impl_->wake_collector();
    // Large frames wait here while the pools hold one per worker and one more: enough to keep
    // every worker busy; past that, a caller that encodes faster than the workers run would
    // fill memory with frames, each in fresh pages, where waiting lets it reuse the files of
    // the frames done.
    if (large) wait_for_lent_payload_files(impl_->processes + 1);
}

bool PoolCore::add_to_batch(std::uint64_t entry, std::uint64_t function,
                            std::span<const std::byte> record,
                            const std::function<void(const std::shared_ptr<Job>&)>& add_task) {
    std::lock_guard lock(impl_->mutex);
    impl_->require_running();
    // The batch is still in `submitted`, so the wake-up that came with it is still to be
    // taken: the collector will see the added task without another.
    if (impl_->submitted.empty() || !impl_->submitted.back().gathering) return false;
    Chunk& batch = impl_->submitted.back();
    FrameHeader header = batch.frame->header();
    if (header.entry != entry || header.function != function ||
        header.item_count >= max_batch_tasks) {
        return false;
    }
    auto& bytes = batch.frame->bytes;
    // Room first (doubling, as push_back would), so that nothing can throw once the call's
    // result is added.
    const std::size_t size = bytes.size() + record.size();
    if (size > bytes.capacity()) bytes.reserve(std::max(size, 2 * bytes.capacity()));
    add_task(batch.job);
    bytes.insert(bytes.end(), record.begin(), record.end());
    ++header.item_count;
    header.payload_bytes += record.size();
    std::memcpy(bytes.data(), &header, sizeof header);
    return true;
}

void PoolCore::submit_batch(const std::shared_ptr<Job>& job, Frame frame) {
    bool wake = false;
    {
        std::lock_guard lock(impl_->mutex);
        impl_->require_running();
        wake = !std::exchange(impl_->wake_pending, true);
        Chunk chunk;
        chunk.job = job;
        chunk.frame = std::make_shared<Frame>(std::move(frame));
        chunk.batch = true;
        chunk.gathering = true;
        impl_->submitted.push_back(std::move(chunk));
    }
    if (wake) impl_->wake_collector();
}

void PoolCore::open_lazy_input() {
    std::lock_guard lock(impl_->mutex);
    impl_->require_running();
    ++impl_->lazy_inputs;
}

void PoolCore::end_lazy_input() noexcept {
    bool wake = false;
    {
        std::lock_guard lock(impl_->mutex);
        --impl_->lazy_inputs;
        wake = impl_->lazy_inputs == 0 && impl_->state == Impl::State::closed;
    }
    // A closed pool whose workers waited for it can end.
    if (wake) impl_->wake_collector();
}

void PoolCore::close() {
    {
        std::lock_guard lock(impl_->mutex);
        if (impl_->state == Impl::State::running) impl_->state = Impl::State::closed;
    }
    impl_->wake_collector();
}

void PoolCore::join() {
    {
        std::lock_guard lock(impl_->mutex);
        if (impl_->state == Impl::State::running) {
            throw StateError(
                "mproc: join() on a pool that is still running; call close() or "
                "terminate() first");
        }
        if (impl_->joined) return;
        impl_->joined = true;
    }
    // A collector that kept the workers up for an open lazy input lets them go now.
    impl_->wake_collector();
    impl_->collector.join();
    impl_->launcher->reap();
    drop_idle_payload_files();
}

void PoolCore::terminate() {
    {
        std::lock_guard lock(impl_->mutex);
        if (impl_->joined) return;
        impl_->state = Impl::State::terminating;
    }
    impl_->wake_collector();
    join();
}

}  // namespace mproc::detail
