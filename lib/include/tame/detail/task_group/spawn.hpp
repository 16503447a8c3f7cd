#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/signalled_handler.hpp>
#include <tame/detail/task_group/state.hpp>
#include <tame/error.hpp>
#include <tame/permit.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/system_error.hpp>

#include <cstdint>
#include <exception>
#include <memory>
#include <utility>

namespace tame::detail {

/// The steps of task_group::async_spawn (an asio::async_compose implementation):
/// count the spawn, take a free slot or wait for one, start the task unless the
/// group has been cancelled meanwhile, complete.
template <class Factory>
class spawn_op {
  public:
    spawn_op(std::shared_ptr<task_group_state> state, Factory factory)
        : state_{std::move(state)}, factory_{std::move(factory)}
    {
    }

    template <class Self>
    void operator()(Self& self)
    {
        task_group_state& state = *state_; // the group holds it during this call
        // A free slot: start at once, as try_spawn() does, and only post the
        // completion (it must not run inside async_spawn).
        if (state.try_start(std::move(factory_))) {
            state_.reset(); // decided
            asio::post(asio::append(std::move(self), error_code{}, permit{}));
            return;
        }
        // Counted before the wait: a join must not finish between the grant of
        // a slot and the start of the task. If the wait cannot start, the moved
        // copy of this object that `self` holds uncounts the spawn as it is
        // destroyed.
        state.tasks.add();
        counted_ = true;
        // The wait for a slot is cancellable like any acquire: every type. It is
        // not bound to the group's cancel_source: the group closes `slots` when
        // it is cancelled, which fails the wait from any thread, whereas a
        // cancellation slot may only be used on the spawner's executor.
        self.reset_cancellation_state(asio::enable_total_cancellation());
        state.slots.async_acquire(std::move(self));
    }

    spawn_op(spawn_op&&) noexcept = default;
    spawn_op& operator=(spawn_op&&) = delete;

    /// Destroyed before the spawn was decided (its io_context was destroyed, or
    /// starting the wait threw): it no longer holds back a join.
    ~spawn_op()
    {
        if (state_ && counted_) {
            state_->tasks.done();
        }
    }

    template <class Self>
    void operator()(Self& self, error_code ec, permit slot)
    {
        if (state_) { // else decided when the spawn was made
            decide(ec, std::move(slot));
        }
        self.complete(outcome_);
    }

  private:
    /// After the wait: starts the task with the slot `ec` says was granted, or
    /// uncounts the spawn.
    void decide(error_code ec, permit slot)
    {
        // closed: the group was cancelled while this spawn waited, or before;
        // a slot granted just before is given back.
        const std::uint64_t epoch = state_->lanes.epoch(); // before the check: see try_start()
        if (ec == errc::closed || (!ec && state_->is_cancelled())) {
            ec = asio::error::operation_aborted;
        }
        auto state = std::move(state_);
        if (ec) {
            state->tasks.done();
        } else {
            try {
                state->start(std::move(factory_), std::move(slot), epoch);
            } catch (...) {
                // Out of memory: not a reason to take down the thread running
                // this handler. The task, already uncounted by its completion's
                // destructor, fails the group.
                state->fail(std::current_exception());
                ec = asio::error::operation_aborted;
            }
        }
        outcome_ = ec;
    }

    std::shared_ptr<task_group_state> state_; // null once moved from or decided
    Factory factory_;
    bool counted_ = false;
    error_code outcome_; // clear when started at once
};

} // namespace tame::detail
