#pragma once

#include <tame/cancel_source.hpp>
#include <tame/detail/config.hpp>
#include <tame/detail/task_lane.hpp>
#include <tame/on_failure.hpp>
#include <tame/permit.hpp>
#include <tame/semaphore.hpp>
#include <tame/wait_group.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/co_spawn.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <type_traits>
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
/// - `lanes` are the strands tasks run on; cancelling the group sweeps them, so
///   that the cancellation reaches each task on its own strand, from any
///   thread, even when the group's executor is an io_context run by several.
/// - `cancel` tells whoever else must stop with the group (with_task_group's
///   body); `slots` is closed at the same time, which fails every spawn waiting
///   for a slot and every later one.
class task_group_state : public std::enable_shared_from_this<task_group_state> {
  public:
    task_group_state(const asio::any_io_executor& ex, std::size_t limit, on_failure policy)
        : executor{ex}, limit{limit}, policy{policy},
          slots{ex, limit == 0 ? async_semaphore::max_capacity : limit}, tasks{ex}, lanes{ex, 0,
                                                                                          limit,
                                                                                          false}
    {
    }

    /// Runs `factory()` as a new task on one of the group's lanes, holding
    /// `slot` until it ends; `epoch` was read before the caller checked that
    /// the group is not cancelled. The caller has already counted it in `tasks`.
    template <class Factory>
    void start(Factory&& factory, permit slot, std::uint64_t epoch);

    /// Starts `factory()` at once if a slot is free and the group has not been
    /// cancelled; moves from `factory` only then. True if the task was started.
    template <class Factory>
    bool try_start(Factory&& factory)
    {
        const std::uint64_t epoch = lanes.epoch();
        if (is_cancelled()) {
            return false;
        }
        permit slot = slots.try_acquire();
        if (!slot) {
            return false;
        }
        tasks.add();
        start(std::forward<Factory>(factory), std::move(slot), epoch);
        return true;
    }

    /// Whether the group has been cancelled. seq_cst: see task_lanes::epoch().
    bool is_cancelled() const noexcept { return cancelled_.load(std::memory_order_seq_cst); }

    /// Cancels the running tasks and fails the spawns, waiting or to come.
    void cancel_all()
    {
        cancelled_.store(true, std::memory_order_seq_cst);
        lanes.cancel_all(shared_from_this());
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
    task_lanes lanes;

  private:
    std::atomic<bool> cancelled_{false};
};

/// How a task of the group ends: records how, then gives back its slot and
/// its count, in that order, so that a failure cancels the group before a
/// waiting spawn can take the slot and start another task. Runs on the task's
/// strand (see lane_task_end).
class task_ending {
  public:
    task_ending(std::shared_ptr<task_group_state> state, permit slot) noexcept
        : state_{std::move(state)}, slot_{std::move(slot)}
    {
    }

    task_ending(task_ending&&) noexcept = default;
    task_ending& operator=(task_ending&&) = delete;

    /// Destroyed uncalled (co_spawn threw, or the io_context was destroyed with
    /// the task in it): the task counts as ended, without a failure.
    ~task_ending()
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
void task_group_state::start(Factory&& factory, permit slot, std::uint64_t epoch)
{
    running.fetch_add(1, std::memory_order_relaxed);
    auto self = shared_from_this();
    // A spawned task always runs: cancelled before its first step, it is
    // cancelled at its first await, as a running task is.
    spawn_on_lane<early_cancel::at_first_await>(
        lanes.next(), epoch, std::forward<Factory>(factory), task_ending{self, std::move(slot)},
        [this](task_lane& lane, lane_task& task) { lanes.link(lane, task, shared_from_this()); },
        self);
}

} // namespace tame::detail
