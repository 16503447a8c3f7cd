#pragma once

#include <tame/time_source.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>

namespace tame {

/// How a task_pool is set up; every member has a default.
struct task_pool_options {
    /// For max_waiting: no limit on waiting submitters.
    static constexpr std::size_t unlimited = std::numeric_limits<std::size_t>::max();

    /// The most tasks that run at once (ants' pool size). Changed later by resize().
    std::size_t capacity = 100;

    /// The most submitters that wait for a free slot at once; one more is
    /// refused with errc::pool_overloaded. 0 is ants' Nonblocking mode: a full
    /// pool refuses at once.
    std::size_t max_waiting = unlimited;

    /// The number of strands tasks take turns on; 0 picks twice the hardware
    /// threads (at most `capacity`). Ignored when the pool's executor is a
    /// strand (every task runs on it), and with `single_threaded`.
    std::size_t strands = 0;

    /// Declares that one thread runs the pool's executor (an io_context run by
    /// one thread): tasks then run on the executor itself, which serialises
    /// them as a strand would, and skip the strands' cost (up to 0.2 us a
    /// coroutine task here). Wrong for an executor run by several threads: a
    /// task's handlers could then run concurrently, and cancelling a task
    /// would race with it.
    bool single_threaded = false;

    /// Called, on the task's strand, with each exception that escapes a task
    /// given to async_submit() or try_submit() (async_run() hands its exception
    /// to its caller instead). Empty: the exception is written to stderr. It
    /// must not throw; what it throws is dropped.
    std::function<void(std::exception_ptr)> on_exception;

    /// Where async_shutdown() reads the time and waits out its grace period:
    /// the steady clock, unless a test gives a manual_time (null: the steady clock).
    std::shared_ptr<time_source> time = steady_time();
};

/// Counters of a task_pool, for metrics. Each is read on its own, so a snapshot
/// taken under load is only nearly consistent; when the pool is idle,
/// `submitted == completed + failed + cancelled` exactly (and, in general,
/// `submitted == completed + failed + cancelled + running`).
struct task_pool_stats {
    /// The most tasks that run at once (after resize(), the new value).
    std::size_t capacity = 0;
    /// Tasks started and not yet ended.
    std::size_t running = 0;
    /// Submitters waiting for a slot (or for their key's turn).
    std::size_t waiting = 0;
    /// Tasks started since the pool was made.
    std::uint64_t submitted = 0;
    /// Tasks that returned (a cancelled task that returns normally counts here).
    std::uint64_t completed = 0;
    /// Tasks that ended with an exception, other than the cancellation below.
    std::uint64_t failed = 0;
    /// Tasks the pool cancelled (cancel_all(), a cancelled async_run(),
    /// shutdown) that ended with asio::error::operation_aborted.
    std::uint64_t cancelled = 0;
    /// Submissions refused: pool_overloaded, closed, or a full try_submit().
    std::uint64_t rejected = 0;
};

} // namespace tame
