#pragma once

#include <tame/detail/config.hpp>
#include <tame/error.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/consign.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <utility>

namespace tame {

/// Where a tame object reads the time and waits for it: the steady clock,
/// unless a test injects a clock it moves by hand (manual_time).
///
/// task_pool's shutdown and tame::http's server take one in their options, so
/// that a test whose subject is time (a grace period, a header timeout) needs
/// no real waiting: it advances the clock and sees what happens.
///
/// An implementation gives now() and start_wait(). Thread safety: every member
/// may be called from any thread.
class time_source {
  public:
    using clock = std::chrono::steady_clock;
    using duration = clock::duration;
    using time_point = clock::time_point;

    virtual ~time_source() = default;

    /// The time now.
    virtual time_point now() const noexcept = 0;

    /// Waits until now() has reached `deadline`; a deadline already passed
    /// completes at once.
    ///
    /// Completion signature: `void(error_code)`. Errors:
    /// asio::error::operation_aborted when cancelled.
    ///
    /// **Cancellation**: terminal, partial and total, through the handler's
    /// slot; nothing is left waiting.
    ///
    /// The handler runs on its associated executor (by default `ex`), never
    /// inside this call, and the wait counts as outstanding work there.
    template <class Token>
    requires asio::completion_token_for<Token, void(error_code)>
    auto async_wait_until(const asio::any_io_executor& ex, time_point deadline, Token&& token)
    {
        return asio::async_initiate<Token, void(error_code)>(initiate_wait{this, ex}, token,
                                                             deadline);
    }

  protected:
    /// Starts a wait, with async_wait_until()'s contract.
    virtual void start_wait(const asio::any_io_executor& ex, time_point deadline,
                            asio::any_completion_handler<void(error_code)> handler) = 0;

  private:
    struct initiate_wait {
        time_source* self;
        asio::any_io_executor ex;

        asio::any_io_executor get_executor() const noexcept { return ex; }

        template <class Handler>
        void operator()(Handler&& handler, time_point deadline) const
        {
            self->start_wait(
                ex, deadline,
                asio::any_completion_handler<void(error_code)>{std::forward<Handler>(handler)});
        }
    };
};

namespace detail {

/// The steady clock, each wait on an asio::steady_timer of its own.
class steady_time_source final : public time_source {
  public:
    time_point now() const noexcept override { return clock::now(); }

  protected:
    void start_wait(const asio::any_io_executor& ex, time_point deadline,
                    asio::any_completion_handler<void(error_code)> handler) override
    {
        auto timer = std::make_shared<asio::steady_timer>(ex, deadline);
        auto slot = asio::get_associated_cancellation_slot(handler);
        auto handler_ex = asio::get_associated_executor(handler, ex);
        // The timer honours the handler's slot, and Asio 1.81 leaves its
        // canceller there after the wait completes, pointing into the timer.
        // The slot is cleared before the handler runs, so that a later emit
        // on the caller's signal cannot reach a freed timer; consign keeps the
        // timer alive until then.
        timer->async_wait(asio::bind_cancellation_slot(
            slot, asio::bind_executor(handler_ex,
                                      asio::consign(
                                          [slot, h = std::move(handler)](error_code ec) mutable {
                                              if (slot.is_connected()) {
                                                  slot.clear();
                                              }
                                              std::move(h)(ec);
                                          },
                                          timer))));
    }
};

} // namespace detail

/// The steady clock, waited on with Asio's steady_timer: the time_source of
/// every tame object not given another. One object, shared.
inline const std::shared_ptr<time_source>& steady_time()
{
    static const std::shared_ptr<time_source> source =
        std::make_shared<detail::steady_time_source>();
    return source;
}

} // namespace tame
