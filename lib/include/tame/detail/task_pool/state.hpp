#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/graceful_shutdown.hpp>
#include <tame/detail/operation_aborted.hpp>
#include <tame/detail/task_lane.hpp>
#include <tame/detail/task_pool/keys.hpp>
#include <tame/detail/task_strands.hpp>
#include <tame/semaphore.hpp>
#include <tame/task_pool_options.hpp>
#include <tame/time_source.hpp>
#include <tame/wait_group.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <utility>

namespace tame::detail {

/// Writes a task's exception to stderr: the default on_exception. Compiled.
void log_task_exception(std::exception_ptr e) noexcept;

/// One count in a pool's `tasks`, which drains wait for: taken before a
/// submission takes a slot, handed from step to step (admission, ticket), and
/// given back once, explicitly or when destroyed (a submission abandoned
/// halfway, say by an allocation failure, must not hold a drain for ever).
class pool_count {
  public:
    pool_count() noexcept = default;
    explicit pool_count(wait_group& tasks) noexcept : tasks_{&tasks} { tasks.add(); }
    pool_count(pool_count&& other) noexcept : tasks_{std::exchange(other.tasks_, nullptr)} {}
    pool_count& operator=(pool_count&&) = delete;
    ~pool_count() { reset(); }

    void reset() noexcept
    {
        if (tasks_ != nullptr) {
            std::exchange(tasks_, nullptr)->done();
        }
    }

  private:
    wait_group* tasks_ = nullptr; // inside the pool's state, which the holder keeps alive
};

/// The shared state of a task_pool, owned by the pool and by every task and
/// submission in flight, so that they may outlive the pool.
///
/// - `slots` admits tasks: one permit per running task, `capacity` in all.
/// - `tasks` counts running tasks and submissions not yet decided; drains wait on it.
/// - `keys` orders keyed submissions.
/// - `lanes` are the strands tasks run on; cancel_all() sweeps each of them.
/// - `shutdown` runs async_shutdown(), whose steps are the overrides below.
class task_pool_state : public std::enable_shared_from_this<task_pool_state>,
                        public shutdown_target {
  public:
    task_pool_state(const asio::any_io_executor& ex, const task_pool_options& options)
        : executor{ex}, slots{ex, options.capacity}, tasks{ex}, keys{ex},
          max_waiting{options.max_waiting}, on_exception{options.on_exception ? options.on_exception
                                                                              : log_task_exception},
          shutdown{make_task_strand(ex), options.time ? options.time : steady_time()},
          lanes{ex, options.strands, options.capacity, options.single_threaded}
    {
    }

    /// A submitter is about to wait; false (and counted as rejected) when
    /// `max_waiting` already do.
    bool enter_waiting() noexcept
    {
        std::size_t now = waiting.load(std::memory_order_relaxed);
        do {
            if (now >= max_waiting) {
                rejected.fetch_add(1, std::memory_order_relaxed);
                return false;
            }
        } while (!waiting.compare_exchange_weak(now, now + 1, std::memory_order_relaxed));
        return true;
    }

    void leave_waiting() noexcept { waiting.fetch_sub(1, std::memory_order_relaxed); }

    /// Refuses new work, and fails the submitters that wait.
    void close() noexcept
    {
        // seq_cst with the lanes' epoch: see task_lanes::epoch().
        closed.store(true, std::memory_order_seq_cst);
        slots.close();
        keys.close();
    }

    bool is_closed() const noexcept { return closed.load(std::memory_order_seq_cst); }

    /// Cancels every task started before this call, on its own strand.
    void cancel_all() { lanes.cancel_all(shared_from_this()); }

    void task_started() noexcept
    {
        running.fetch_add(1, std::memory_order_relaxed);
        submitted.fetch_add(1, std::memory_order_relaxed);
    }

    /// A task ended with `e` (null: it returned). `cancelled`: the pool had
    /// cancelled it. `report`: an exception goes to on_exception.
    void task_ended(const std::exception_ptr& e, bool cancelled, bool report) noexcept
    {
        running.fetch_sub(1, std::memory_order_relaxed);
        if (!e) {
            completed.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        if (cancelled && is_operation_aborted(e)) {
            this->cancelled.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        failed.fetch_add(1, std::memory_order_relaxed);
        if (report) {
            try {
                on_exception(e);
            } catch (...) { // documented: dropped
            }
        }
    }

    task_pool_stats stats() const noexcept
    {
        task_pool_stats s;
        s.capacity = slots.capacity();
        s.running = running.load(std::memory_order_relaxed);
        s.waiting = waiting.load(std::memory_order_relaxed);
        s.submitted = submitted.load(std::memory_order_relaxed);
        s.completed = completed.load(std::memory_order_relaxed);
        s.failed = failed.load(std::memory_order_relaxed);
        s.cancelled = cancelled.load(std::memory_order_relaxed);
        s.rejected = rejected.load(std::memory_order_relaxed);
        return s;
    }

    // The steps of async_shutdown(), on its strand.
    void stop_intake() override { close(); }
    wait_group& work() noexcept override { return tasks; }
    void cancel_work() override
    {
        cancelled_at_grace_end_ = running.load(std::memory_order_relaxed);
        cancel_all();
    }
    std::size_t cancelled_work() const noexcept override { return cancelled_at_grace_end_; }

    const asio::any_io_executor executor;
    async_semaphore slots;
    wait_group tasks;
    pool_keys keys;
    const std::size_t max_waiting;
    const std::function<void(std::exception_ptr)> on_exception;
    graceful_shutdown shutdown;
    task_lanes lanes;

    std::atomic<bool> closed{false};
    std::atomic<std::size_t> running{0};
    std::atomic<std::size_t> waiting{0};
    std::atomic<std::uint64_t> submitted{0};
    std::atomic<std::uint64_t> completed{0};
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> cancelled{0};
    std::atomic<std::uint64_t> rejected{0};

  private:
    std::size_t cancelled_at_grace_end_ = 0; // on the shutdown's strand
};

} // namespace tame::detail
