#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/recycling_allocator.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/associator.hpp>
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
};

/// Forwards a cancellation emitted on the caller's own slot (say, a coroutine
/// being cancelled) to the operation, whose slot is now the deadline's signal.
class cancellation_forwarder {
public:
    explicit cancellation_forwarder(asio::cancellation_signal* signal) noexcept : signal_{signal} {}

    void operator()(asio::cancellation_type type) const { signal_->emit(type); }

private:
    asio::cancellation_signal* signal_;
};

/// The completion handler an operation under a deadline really receives: the
/// caller's handler, with its executor and allocator, but with the deadline's
/// cancellation slot. On completion it stops the timer and unhooks the caller's
/// slot before calling the caller's handler.
template <class Handler, class State>
class deadline_handler {
public:
    using cancellation_slot_type = asio::cancellation_slot;

    deadline_handler(Handler handler, std::shared_ptr<State> state)
        : handler_{std::move(handler)},
          state_{std::move(state)},
          outer_slot_{asio::get_associated_cancellation_slot(handler_)}
    {
        if (outer_slot_.is_connected()) {
            outer_slot_.template emplace<cancellation_forwarder>(&state_->signal);
        }
    }

    deadline_handler(deadline_handler&& other) noexcept = default;
    deadline_handler& operator=(deadline_handler&&) = delete;

    ~deadline_handler()
    {
        // Destroyed without being called (its execution context shut down): the
        // caller's slot must not keep pointing into the state.
        if (state_) {
            finish();
        }
    }

    cancellation_slot_type get_cancellation_slot() const noexcept { return state_->signal.slot(); }

    template <class... Args>
    void operator()(Args&&... args)
    {
        finish();
        state_.reset();
        std::move(handler_)(std::forward<Args>(args)...);
    }

    const Handler& inner() const noexcept { return handler_; }

private:
    void finish() noexcept
    {
        state_->done = true;
        boost::system::error_code ignored;
        state_->timer.cancel(ignored); // its handler runs soon and drops the state
        if (outer_slot_.is_connected()) {
            outer_slot_.clear();
        }
    }

    Handler handler_;
    std::shared_ptr<State> state_;
    asio::associated_cancellation_slot_t<Handler> outer_slot_;
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

/// Stands in for the executor of an initiation that offers none.
struct no_executor {
};

/// The executor an initiation offers for handlers that name none, when it has one.
template <class Initiation>
auto initiation_executor(const Initiation& initiation)
{
    if constexpr (requires { initiation.get_executor(); }) {
        return initiation.get_executor();
    } else {
        return no_executor{};
    }
}

/// Wraps an initiation so that the handler it receives runs under a deadline.
template <class Initiation, class Clock>
class initiate_with_deadline {
public:
    initiate_with_deadline(Initiation initiation, typename Clock::time_point deadline,
                           asio::cancellation_type type, bool* expired)
        : initiation_{std::move(initiation)}, deadline_{deadline}, type_{type}, expired_{expired}
    {
    }

    template <class Handler, class... Args>
    void operator()(Handler&& handler, Args&&... args)
    {
        using handler_type = std::decay_t<Handler>;
        const auto fallback = initiation_executor(initiation_);
        auto ex = asio::associated_executor<handler_type, decltype(fallback)>::get(handler, fallback);
        static_assert(!std::is_same_v<decltype(ex), no_executor>,
                      "cancel_after/cancel_at need an executor for their timer: this "
                      "operation names none, so bind one to the handler (asio::bind_executor)");
        using state_type = deadline_state<Clock, decltype(ex)>;

        auto state = std::allocate_shared<state_type>(recycling_allocator<state_type>{}, ex,
                                                      type_, expired_);
        state->timer.expires_at(deadline_);
        state->timer.async_wait(deadline_expiry<state_type>{state});
        std::move(initiation_)(deadline_handler<handler_type, state_type>{
                                   std::forward<Handler>(handler), std::move(state)},
                               std::forward<Args>(args)...);
    }

private:
    Initiation initiation_;
    typename Clock::time_point deadline_;
    asio::cancellation_type type_;
    bool* expired_;
};

} // namespace tame::detail

// Every associated property of the wrapped handler except its cancellation slot
// (which deadline_handler names itself) is the caller's handler's.
template <template <class, class> class Associator, class Handler, class State, class Default>
struct boost::asio::associator<Associator, tame::detail::deadline_handler<Handler, State>, Default>
    : Associator<Handler, Default> {
    static typename Associator<Handler, Default>::type
    get(const tame::detail::deadline_handler<Handler, State>& h) noexcept
    {
        return Associator<Handler, Default>::get(h.inner());
    }

    static auto get(const tame::detail::deadline_handler<Handler, State>& h,
                    const Default& d) noexcept -> decltype(Associator<Handler, Default>::get(h.inner(), d))
    {
        return Associator<Handler, Default>::get(h.inner(), d);
    }
};
