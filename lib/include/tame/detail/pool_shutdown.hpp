#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/task_pool_ops.hpp>
#include <tame/detail/task_pool_state.hpp>
#include <tame/detail/task_strands.hpp>
#include <tame/error.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <utility>

namespace tame::detail {

/// The longest grace period async_shutdown() arms a timer for; longer ones
/// (hours::max(), say) mean the same: wait for the work, however long.
inline constexpr std::chrono::hours longest_grace{24 * 365 * 100};

/// task_pool::async_shutdown: close; drain for up to the grace period; cancel
/// what still runs; wait for it; report how many tasks were still running.
///
/// Its steps run on a strand of its own, whatever thread the pool's executor
/// runs on: the grace timer, the drain wait and the caller's cancellation (which
/// is posted there) all meet on it, so none races another. The last step never
/// runs inside async_shutdown itself.
template <class Handler>
class pool_shutdown_op : public std::enable_shared_from_this<pool_shutdown_op<Handler>> {
  public:
    pool_shutdown_op(std::shared_ptr<task_pool_state> pool,
                     std::chrono::steady_clock::duration grace, Handler handler)
        : pool_{std::move(pool)}, strand_{make_task_strand(pool_->executor)}, timer_{strand_},
          grace_{grace}, caller_slot_{asio::get_associated_cancellation_slot(handler)},
          completion_{run_completion<Handler>{std::move(handler)}, pool_->executor}
    {
    }

    /// Called once, by the initiation.
    void start()
    {
        if (caller_slot_.is_connected()) {
            caller_slot_.template emplace<canceller>(this->weak_from_this());
        }
        asio::post(strand_, [self = this->shared_from_this()] { self->begin(); });
    }

  private:
    /// Lives in the caller's slot: terminal or partial cancellation ends the
    /// grace period now, on the shutdown's strand. Total cancellation (no side
    /// effects) cannot be honoured: stopping work is a side effect. Holds the
    /// operation weakly and nothing else, so that, should it ever outlive the
    /// operation in the caller's signal, it keeps no executor alive.
    class canceller {
      public:
        explicit canceller(std::weak_ptr<pool_shutdown_op> op) noexcept : op_{std::move(op)} {}

        void operator()(asio::cancellation_type type) const
        {
            if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial)) ==
                asio::cancellation_type::none) {
                return;
            }
            if (auto op = op_.lock()) {
                const asio::any_io_executor strand = op->strand_;
                asio::post(strand, [op = std::move(op)] { op->end_grace(); });
            }
        }

      private:
        std::weak_ptr<pool_shutdown_op> op_;
    };

    void begin()
    {
        pool_->close();
        if (grace_ <= grace_.zero() || grace_cut_) {
            cancel_rest();
            return;
        }
        draining_ = true;
        timer_.expires_after(grace_);
        timer_.async_wait([self = this->shared_from_this()](error_code ec) {
            if (!ec) {
                self->end_grace();
            }
        });
        pool_->tasks.async_wait(asio::bind_executor(
            strand_, asio::bind_cancellation_slot(
                         drain_signal_.slot(),
                         [self = this->shared_from_this()](error_code ec) { self->drained(ec); })));
    }

    /// The grace period is over (its timer, or the caller's cancellation).
    void end_grace()
    {
        grace_cut_ = true;
        if (draining_) {
            drain_signal_.emit(asio::cancellation_type::terminal);
        }
    }

    void drained(error_code ec)
    {
        draining_ = false;
        timer_.cancel();
        if (ec) { // cut short
            cancel_rest();
            return;
        }
        finish();
    }

    void cancel_rest()
    {
        cancelled_ = pool_->running.load(std::memory_order_relaxed);
        pool_->cancel_all();
        // Not cancellable: the tasks have been told to stop, and the promise is
        // that none is left when the shutdown completes.
        pool_->tasks.async_wait(asio::bind_executor(
            strand_, [self = this->shared_from_this()](error_code) { self->finish(); }));
    }

    void finish() { completion_.complete(false, cancelled_); }

    const std::shared_ptr<task_pool_state> pool_;
    const asio::any_io_executor strand_;
    asio::steady_timer timer_;
    const std::chrono::steady_clock::duration grace_;
    asio::associated_cancellation_slot_t<Handler> caller_slot_;
    pending_completion<run_completion<Handler>> completion_;
    asio::cancellation_signal drain_signal_;
    bool draining_ = false;  // the drain wait with the grace timer is pending
    bool grace_cut_ = false; // the grace period was ended early or ran out
    std::size_t cancelled_ = 0;
};

/// The initiation of task_pool::async_shutdown.
struct initiate_pool_shutdown {
    std::shared_ptr<task_pool_state> state;
    std::chrono::steady_clock::duration grace;

    asio::any_io_executor get_executor() const noexcept { return state->executor; }

    template <class Handler>
    void operator()(Handler&& handler) const
    {
        std::make_shared<pool_shutdown_op<std::decay_t<Handler>>>(state, grace,
                                                                  std::forward<Handler>(handler))
            ->start();
    }
};

/// `grace` as a steady_clock duration, at most longest_grace (no overflow).
template <class Rep, class Period>
std::chrono::steady_clock::duration clamp_grace(std::chrono::duration<Rep, Period> grace)
{
    if (grace > longest_grace) {
        return longest_grace;
    }
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(grace);
}

} // namespace tame::detail
