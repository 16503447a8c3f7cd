#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/recycling_allocator.hpp>
#include <tame/detail/signalled_handler.hpp>

#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/wait_traits.hpp>

#include <memory>
#include <type_traits>
#include <utility>

namespace tame::detail {

/// What one deadline needs while its operation runs: the timer, the signal the
/// operation's slot is bound to, and whether either side has finished.
///
/// The operation's completion and the timer's handler both run on the handler's
/// executor, which must run them one at a time (a strand, or an io_context run by
/// one thread), as Asio requires of anything that emits cancellation. They share
/// this state through a shared_ptr: whichever runs last frees it.
template <class Clock, class Executor>
class deadline_state {
  public:
    using timer_type = asio::basic_waitable_timer<Clock, asio::wait_traits<Clock>, Executor>;

    deadline_state(const Executor& ex, asio::cancellation_type type, bool* expired)
        : timer{ex}, type{type}, expired{expired}
    {
    }

    timer_type timer;
    asio::cancellation_signal signal;
    const asio::cancellation_type type;
    bool* const expired; // with_deadline() reads it; null for cancel_after()
    bool done = false;   // the operation has completed

    /// The operation has completed: stop the timer, whose handler then runs soon
    /// and drops its reference to this state.
    void finish() noexcept
    {
        done = true;
        boost::system::error_code ignored;
        timer.cancel(ignored);
    }
};

/// The timer's completion: on expiry, cancels the operation if it still runs.
template <class State>
class deadline_expiry {
  public:
    explicit deadline_expiry(std::shared_ptr<State> state) noexcept : state_{std::move(state)} {}

    void operator()(const boost::system::error_code& ec)
    {
        if (!ec && !state_->done) {
            if (state_->expired != nullptr) {
                *state_->expired = true;
            }
            state_->signal.emit(state_->type);
        }
    }

  private:
    std::shared_ptr<State> state_;
};

/// Wraps an initiation so that the handler it receives runs under a deadline.
template <class Initiation, class Clock>
class initiate_with_deadline {
  public:
    /// `adapter` is a cancel_at_t: its deadline, type and expiry flag are kept.
    template <class Adapter>
    initiate_with_deadline(Initiation initiation, const Adapter& adapter)
        : initiation_{std::move(initiation)}, deadline_{adapter.deadline}, type_{adapter.type},
          expired_{adapter.expired}
    {
    }

    template <class Handler, class... Args>
    void operator()(Handler&& handler, Args&&... args)
    {
        using handler_type = std::decay_t<Handler>;
        auto ex = completion_executor_of(handler, initiation_);
        static_assert(!std::is_same_v<decltype(ex), no_executor>,
                      "cancel_after/cancel_at need an executor for their timer: this "
                      "operation names none, so bind one to the handler (asio::bind_executor)");
        using state_type = deadline_state<Clock, decltype(ex)>;

        auto state = std::allocate_shared<state_type>(recycling_allocator<state_type>{}, ex, type_,
                                                      expired_);
        state->timer.expires_at(deadline_);
        state->timer.async_wait(deadline_expiry<state_type>{state});
        std::move(initiation_)(
            signalled_handler<handler_type, state_type>{std::forward<Handler>(handler),
                                                        std::move(state)},
            std::forward<Args>(args)...);
    }

  private:
    Initiation initiation_;
    typename Clock::time_point deadline_;
    asio::cancellation_type type_;
    bool* expired_;
};

/// initiate_with_deadline on `Clock`, as a template of the initiation alone.
template <class Clock>
struct deadline_initiation {
    template <class Initiation>
    using type = initiate_with_deadline<Initiation, Clock>;
};

} // namespace tame::detail
