#pragma once

#include <tame/cancel_source.hpp>
#include <tame/detail/config.hpp>
#include <tame/permit.hpp>
#include <tame/semaphore.hpp>
#include <tame/wait_group.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <utility>

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
    task_group_state(const asio::any_io_executor& ex, std::size_t limit)
        : executor{ex},
          limit{limit},
          slots{ex, limit == 0 ? async_semaphore::max_capacity : limit},
          tasks{ex}
    {
    }

    /// Runs `factory()` as a new task on a strand of its own, holding `slot`
    /// until it ends. The caller has already counted it in `tasks`.
    template <class Factory>
    void start(Factory&& factory, permit slot);

    /// Where a new task runs. The group emits cancellation into a task from any
    /// thread, and that must reach the coroutine on the strand it runs on, even
    /// when the group's executor is an io_context run by several threads: so a
    /// task gets a strand of its own, unless the group's executor is a strand.
    asio::any_io_executor task_executor() const
    {
        using io_executor = asio::io_context::executor_type;
        if (executor.target<asio::strand<io_executor>>() != nullptr) {
            return executor;
        }
        // The strand of the concrete executor fits inside an any_io_executor;
        // a strand of the type-erased one would need a shared heap block.
        if (const auto* io = executor.target<io_executor>()) {
            return asio::make_strand(*io);
        }
        return asio::make_strand(executor);
    }

    /// Cancels the running tasks and fails the spawns, waiting or to come.
    void cancel_all()
    {
        cancel.emit();
        slots.close();
    }

    /// A task ended with `e` (null: it returned): the first failure cancels the rest.
    void task_ended(std::exception_ptr e) noexcept
    {
        if (e && failure->record(std::move(e))) {
            cancel_all();
        }
        running.fetch_sub(1, std::memory_order_relaxed);
    }

    const asio::any_io_executor executor;
    const std::size_t limit; // 0: none
    async_semaphore slots;
    wait_group tasks;
    cancel_source cancel;
    const std::shared_ptr<first_failure> failure = std::make_shared<first_failure>();
    std::atomic<std::size_t> running{0};
};

/// The completion of a task's coroutine: records how it ended, then gives back
/// its slot and its count, in that order, so that a failure cancels the group
/// before a waiting spawn can take the slot and start another task.
class task_completion {
public:
    task_completion(std::shared_ptr<task_group_state> state, permit slot) noexcept
        : state_{std::move(state)}, slot_{std::move(slot)}
    {
    }

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
};

template <class Factory>
void task_group_state::start(Factory&& factory, permit slot)
{
    running.fetch_add(1, std::memory_order_relaxed);
    const asio::any_io_executor strand = task_executor();
    asio::co_spawn(strand, std::forward<Factory>(factory),
                   cancel.bind(asio::bind_executor(
                       strand, task_completion{shared_from_this(), std::move(slot)})));
}

} // namespace tame::detail
