#pragma once

#include <tame/cancel_source.hpp>
#include <tame/detail/config.hpp>
#include <tame/detail/task_strands.hpp>
#include <tame/on_failure.hpp>
#include <tame/permit.hpp>
#include <tame/semaphore.hpp>
#include <tame/wait_group.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/co_spawn.hpp>

#include <atomic>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace tame::detail {

/// The first exception that escaped a task of a group; kept apart from the
/// group's state so that a pending join can hold it without holding the group.
class first_failure {
  public:
    /// Keeps `e` if nothing failed before; true if it did.
    bool record(std::exception_ptr e)
    {
        std::lock_guard lock{mutex_};
        if (first_) {
            return false;
        }
        first_ = std::move(e);
        return true;
    }

    std::exception_ptr get() const
    {
        std::lock_guard lock{mutex_};
        return first_;
    }

  private:
    mutable std::mutex mutex_;
    std::exception_ptr first_;
};

/// The shared state of a task_group, owned by the group and by each running
/// task (and each spawn on its way), so that tasks may outlive the group.
///
/// - `slots` admits tasks: one permit per running task (the limit, or as many as
///   a semaphore can count when there is none).
/// - `tasks` counts running tasks and spawns not yet decided; joins wait on it.
/// - `cancel` reaches every running task; `slots` is closed at the same time,
///   which fails every spawn waiting for a slot and every later one.
class task_group_state : public std::enable_shared_from_this<task_group_state> {
  public:
    task_group_state(const asio::any_io_executor& ex, std::size_t limit, on_failure policy)
        : executor{ex}, limit{limit}, policy{policy}, slots{ex, limit == 0
                                                                    ? async_semaphore::max_capacity
                                                                    : limit},
          tasks{ex}, strands_{make_task_strands(ex, 0, limit)}
    {
    }

    /// Runs `factory()` as a new task on one of the group's strands, holding
    /// `slot` until it ends. The caller has already counted it in `tasks`.
    template <class Factory>
    void start(Factory&& factory, permit slot);

    /// Starts `factory()` at once if a slot is free and the group has not been
    /// cancelled; moves from `factory` only then. True if the task was started.
    template <class Factory>
    bool try_start(Factory&& factory)
    {
        if (cancel.cancelled()) {
            return false;
        }
        permit slot = slots.try_acquire();
        if (!slot) {
            return false;
        }
        tasks.add();
        start(std::forward<Factory>(factory), std::move(slot));
        return true;
    }

    /// Where the next task runs: one of the group's strands, in turn.
    const asio::any_io_executor& task_executor() noexcept
    {
        const std::size_t turn = next_strand_.fetch_add(1, std::memory_order_relaxed);
        return strands_[turn % strands_.size()];
    }

    /// Cancels the running tasks and fails the spawns, waiting or to come.
    void cancel_all()
    {
        cancel.emit();
        slots.close();
    }

    /// A task failed with `e` (or starting it did): the first failure is kept
    /// for the join and, unless the group keeps going, cancels the rest.
    void fail(std::exception_ptr e)
    {
        if (failure->record(std::move(e)) && policy == on_failure::cancel_group) {
            cancel_all();
        }
    }

    /// A task ended with `e` (null: it returned). Out of memory while cancelling
    /// the others terminates, as it does when Asio cannot post a handler.
    void task_ended(std::exception_ptr e) noexcept
    {
        if (e) {
            fail(std::move(e));
        }
        running.fetch_sub(1, std::memory_order_relaxed);
    }

    const asio::any_io_executor executor;
    const std::size_t limit; // 0: none
    const on_failure policy;
    async_semaphore slots;
    wait_group tasks;
    cancel_source cancel;
    const std::shared_ptr<first_failure> failure = std::make_shared<first_failure>();
    std::atomic<std::size_t> running{0};

  private:
    /// The strands tasks run on. The group emits cancellation into a task from
    /// any thread, and that must reach the coroutine on the strand it runs on,
    /// even when the group's executor is an io_context run by several threads.
    const std::vector<asio::any_io_executor> strands_;
    std::atomic<std::size_t> next_strand_{0};
};

/// The completion of a task's coroutine: records how it ended, then gives back
/// its slot and its count, in that order, so that a failure cancels the group
/// before a waiting spawn can take the slot and start another task.
///
/// It runs, and receives the group's cancellation, on the task's strand.
class task_completion {
  public:
    using executor_type = asio::any_io_executor;

    task_completion(std::shared_ptr<task_group_state> state, permit slot,
                    const executor_type& strand) noexcept
        : state_{std::move(state)}, slot_{std::move(slot)}, strand_{strand}
    {
    }

    executor_type get_executor() const noexcept { return strand_; }

    task_completion(task_completion&&) noexcept = default;
    task_completion& operator=(task_completion&&) = delete;

    /// Destroyed uncalled (co_spawn threw, or the io_context was destroyed with
    /// the task in it): the task counts as ended, without a failure.
    ~task_completion()
    {
        if (state_) {
            end(nullptr);
        }
    }

    void operator()(std::exception_ptr e) noexcept { end(std::move(e)); }

  private:
    void end(std::exception_ptr e) noexcept
    {
        auto state = std::move(state_);
        state->task_ended(std::move(e));
        slot_.release();
        state->tasks.done();
    }

    std::shared_ptr<task_group_state> state_;
    permit slot_;
    executor_type strand_;
};

template <class Factory>
void task_group_state::start(Factory&& factory, permit slot)
{
    running.fetch_add(1, std::memory_order_relaxed);
    const asio::any_io_executor& strand = task_executor();
    asio::co_spawn(strand, std::forward<Factory>(factory),
                   cancel.bind(task_completion{shared_from_this(), std::move(slot), strand}));
}

} // namespace tame::detail
