#pragma once

#include <tame/detail/config.hpp>
#include <tame/error.hpp>
#include <tame/time_source.hpp>
#include <tame/wait_group.hpp>

#include <boost/asio/any_completion_executor.hpp>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace tame::detail {

/// The longest grace period a shutdown waits for; longer ones (hours::max(),
/// say) mean the same: wait for the work, however long.
inline constexpr std::chrono::hours longest_grace{24 * 365 * 100};

/// `grace` as a time_source duration: at most longest_grace (no overflow), at
/// least zero.
template <class Rep, class Period>
time_source::duration clamp_grace(std::chrono::duration<Rep, Period> grace)
{
    if (grace <= grace.zero()) {
        return time_source::duration::zero();
    }
    if (grace > longest_grace) {
        return longest_grace;
    }
    return std::chrono::duration_cast<time_source::duration>(grace);
}

/// What a graceful_shutdown stops: a task_pool's state, or a server's. Each
/// step is called once, on the shutdown's strand.
class shutdown_target {
  public:
    /// Refuses new work: the shutdown's first step.
    virtual void stop_intake() = 0;
    /// The work the shutdown waits for.
    virtual wait_group& work() noexcept = 0;
    /// The grace period has ended with work left: cancels it.
    virtual void cancel_work() = 0;
    /// What the shutdown reports: how much work had to be cancelled.
    virtual std::size_t cancelled_work() const noexcept = 0;
    /// No work is left; the waiters are told next.
    virtual void shutdown_finished() {}

  protected:
    ~shutdown_target() = default;
};

/// The one drain-then-cancel shutdown of tame: stop taking work, let the work
/// under way end within a grace period, cancel what is left, wait for it to
/// end, and report how much was cancelled. Go's http.Server.Shutdown with a
/// context deadline, ants' ReleaseTimeout; task_pool::async_shutdown and
/// http::server::async_shutdown are this.
///
/// It lives inside its target's state and runs its steps on `strand`: the
/// grace wait, the drain wait and the callers' cancellations all meet there,
/// so none races another on a multi-threaded io_context. Handlers keep the
/// target alive (and with it this object) while they are pending.
///
/// A second shutdown joins the first: it completes with the same count (its
/// own grace period is ignored), and a shutdown asked for after the end
/// completes at once with that count.
///
/// **Cancellation** of any waiter, terminal or partial, ends the grace period
/// at once (the work left is cancelled); the shutdown still waits for that
/// work. Total cancellation (which allows no side effects) is ignored.
class graceful_shutdown {
  public:
    graceful_shutdown(asio::any_io_executor strand, std::shared_ptr<time_source> time)
        : strand_{std::move(strand)}, time_{std::move(time)}
    {
    }

    graceful_shutdown(const graceful_shutdown&) = delete;
    graceful_shutdown& operator=(const graceful_shutdown&) = delete;

    /// Starts the shutdown of `target` (or joins it) for `handler`, which is
    /// called with the count on its associated executor (by default
    /// `fallback`), never inside this call. Any thread.
    void join(std::shared_ptr<shutdown_target> target, time_source::duration grace,
              asio::any_completion_handler<void(std::size_t)> handler,
              const asio::any_io_executor& fallback)
    {
        auto slot = asio::get_associated_cancellation_slot(handler);
        if (slot.is_connected()) {
            slot.template emplace<canceller>(std::weak_ptr<shutdown_target>{target}, this);
        }
        waiter w{std::move(handler), fallback};
        asio::post(strand_, [this, target = std::move(target), grace, w = std::move(w)]() mutable {
            waiters_.push_back(std::move(w));
            if (finished_) {
                tell_waiters();
            } else if (!started_) {
                begin(std::move(target), grace);
            }
        });
    }

    /// Ends the grace period now, as if it had run out (say, an immediate
    /// stop). Any thread; nothing happens if no shutdown is under way.
    void end_grace_now(std::shared_ptr<shutdown_target> target)
    {
        // The target, which holds this object, is kept until then.
        asio::post(strand_, [this, target = std::move(target)] { end_grace(); });
    }

  private:
    /// A caller's handler, with outstanding work on its executor until called,
    /// as an Asio operation keeps.
    struct waiter {
        waiter(asio::any_completion_handler<void(std::size_t)> h,
               const asio::any_io_executor& fallback)
            : handler{std::move(h)}, work{asio::prefer(
                                         asio::get_associated_executor(handler, fallback),
                                         asio::execution::outstanding_work.tracked)}
        {
        }

        asio::any_completion_handler<void(std::size_t)> handler;
        asio::any_completion_executor work;
    };

    /// Lives in a waiter's slot: ends the grace period, on the strand. Holds
    /// the target weakly, so that it keeps nothing alive from a caller's signal.
    class canceller {
      public:
        canceller(std::weak_ptr<shutdown_target> target, graceful_shutdown* self) noexcept
            : target_{std::move(target)}, self_{self}
        {
        }

        void operator()(asio::cancellation_type type) const
        {
            if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial)) ==
                asio::cancellation_type::none) {
                return;
            }
            if (auto target = target_.lock()) {
                self_->end_grace_now(std::move(target)); // self_ lives inside target
            }
        }

      private:
        std::weak_ptr<shutdown_target> target_;
        graceful_shutdown* self_;
    };

    void begin(std::shared_ptr<shutdown_target> target, time_source::duration grace)
    {
        started_ = true;
        target->stop_intake();
        if (grace <= grace.zero() || grace_over_) {
            cancel_rest(std::move(target));
            return;
        }
        draining_ = true;
        grace_waiting_ = true;
        time_->async_wait_until(
            strand_, time_->now() + grace,
            asio::bind_cancellation_slot(
                grace_wait_.slot(), asio::bind_executor(strand_, [this, target](error_code ec) {
                    grace_waiting_ = false;
                    if (!ec) {
                        end_grace();
                    }
                })));
        target->work().async_wait(asio::bind_executor(
            strand_,
            asio::bind_cancellation_slot(drain_wait_.slot(),
                                         [this, target](error_code ec) { drained(target, ec); })));
    }

    /// The grace period is over: it ran out, or a caller cut it short.
    void end_grace()
    {
        grace_over_ = true;
        if (draining_) {
            drain_wait_.emit(asio::cancellation_type::terminal);
        }
    }

    void drained(std::shared_ptr<shutdown_target> target, error_code ec)
    {
        draining_ = false;
        if (grace_waiting_) { // never emitted once the wait has completed
            grace_wait_.emit(asio::cancellation_type::terminal);
        }
        if (ec) { // the grace period ended first
            cancel_rest(std::move(target));
            return;
        }
        finish(*target);
    }

    void cancel_rest(std::shared_ptr<shutdown_target> target)
    {
        target->cancel_work();
        // Not cancellable: the work has been told to stop, and the promise is
        // that none is left when the shutdown completes.
        shutdown_target& t = *target;
        t.work().async_wait(asio::bind_executor(
            strand_, [this, target = std::move(target)](error_code) { finish(*target); }));
    }

    void finish(shutdown_target& target)
    {
        finished_ = true;
        cancelled_ = target.cancelled_work();
        target.shutdown_finished();
        tell_waiters();
    }

    void tell_waiters()
    {
        for (auto& w : waiters_) {
            // Posted through the strand, then run on the handler's executor,
            // where the caller's slot may be cleared.
            const asio::any_completion_executor ex = w.work;
            asio::post(strand_,
                       asio::bind_executor(ex, [w = std::move(w), n = cancelled_]() mutable {
                           auto slot = asio::get_associated_cancellation_slot(w.handler);
                           if (slot.is_connected()) {
                               slot.clear();
                           }
                           std::move(w.handler)(n);
                       }));
        }
        waiters_.clear();
    }

    const asio::any_io_executor strand_;
    const std::shared_ptr<time_source> time_;
    std::vector<waiter> waiters_;
    asio::cancellation_signal grace_wait_;
    asio::cancellation_signal drain_wait_;
    bool started_ = false;
    bool draining_ = false;      // the drain wait, raced by the grace wait, is pending
    bool grace_waiting_ = false; // the grace wait is pending
    bool grace_over_ = false;    // it ran out, or was cut short
    bool finished_ = false;
    std::size_t cancelled_ = 0;
};

} // namespace tame::detail
