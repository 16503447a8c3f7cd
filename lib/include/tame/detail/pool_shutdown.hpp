#pragma once

#include <tame/deadline.hpp>
#include <tame/detail/config.hpp>
#include <tame/detail/task_pool_state.hpp>
#include <tame/error.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_state.hpp>

#include <chrono>
#include <cstddef>
#include <memory>

namespace tame::detail {

/// The steps of task_pool::async_shutdown (an asio::async_compose
/// implementation): close; drain for up to `grace`; cancel what still runs;
/// wait for it; report how many tasks were still running when cancelled.
class pool_shutdown_op {
public:
    pool_shutdown_op(std::shared_ptr<task_pool_state> state,
                     std::chrono::steady_clock::duration grace) noexcept
        : state_{std::move(state)}, grace_{grace}
    {
    }

    template <class Self>
    void operator()(Self& self)
    {
        state_->close();
        if (grace_ <= grace_.zero()) {
            cancel_rest(self);
            return;
        }
        step_ = step::draining;
        // Cancelling the shutdown (terminal or partial) ends the grace period early.
        self.reset_cancellation_state(asio::enable_partial_cancellation());
        auto& tasks = state_->tasks;
        tasks.async_wait(cancel_after(grace_, std::move(self)));
    }

    template <class Self>
    void operator()(Self& self, error_code ec)
    {
        if (step_ == step::draining && ec) {
            cancel_rest(self);
            return;
        }
        self.complete(cancelled_);
    }

private:
    enum class step { draining, cancelling };

    template <class Self>
    void cancel_rest(Self& self)
    {
        step_ = step::cancelling;
        cancelled_ = state_->running.load(std::memory_order_relaxed);
        state_->cancel_all();
        // The last wait is not cancellable: the tasks have been told to stop,
        // and the shutdown's promise is that none is left when it completes.
        auto& tasks = state_->tasks;
        tasks.async_wait(asio::bind_cancellation_slot(asio::cancellation_slot{}, std::move(self)));
    }

    std::shared_ptr<task_pool_state> state_;
    std::chrono::steady_clock::duration grace_;
    step step_ = step::draining;
    std::size_t cancelled_ = 0;
};

} // namespace tame::detail
