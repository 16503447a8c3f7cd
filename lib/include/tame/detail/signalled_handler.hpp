#pragma once

#include <tame/detail/config.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>

#include <memory>
#include <utility>

namespace tame::detail {

/// Forwards a cancellation emitted on the caller's own slot (say, a coroutine
/// being cancelled) to the operation, whose slot is now another signal's.
class cancellation_forwarder {
  public:
    explicit cancellation_forwarder(asio::cancellation_signal* signal) noexcept : signal_{signal} {}

    void operator()(asio::cancellation_type type) const { signal_->emit(type); }

  private:
    asio::cancellation_signal* signal_;
};

/// The completion handler an operation receives when tame takes over its
/// cancellation (a deadline, a cancel_source): the caller's handler, with its
/// executor and allocator, but with the cancellation slot of `State::signal`.
///
/// `State` is shared with whoever emits that signal, and offers
/// `void finish() noexcept`, called once, on the handler's executor, when the
/// operation completes (or its handler is destroyed uncalled). The caller's own
/// slot, if it has one, is forwarded to the signal until then.
template <class Handler, class State>
class signalled_handler {
  public:
    using cancellation_slot_type = asio::cancellation_slot;

    signalled_handler(Handler handler, std::shared_ptr<State> state)
        : handler_{std::move(handler)}, state_{std::move(state)},
          outer_slot_{asio::get_associated_cancellation_slot(handler_)}
    {
        if (outer_slot_.is_connected()) {
            outer_slot_.template emplace<cancellation_forwarder>(&state_->signal);
        }
    }

    signalled_handler(signalled_handler&& other) noexcept = default;
    signalled_handler& operator=(signalled_handler&&) = delete;

    ~signalled_handler()
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
        state_->finish();
        if (outer_slot_.is_connected()) {
            outer_slot_.clear();
        }
    }

    Handler handler_;
    std::shared_ptr<State> state_;
    asio::associated_cancellation_slot_t<Handler> outer_slot_;
};

/// The body of an asio::associator specialisation for a handler wrapper with an
/// `inner()` handler: every associated property is the inner handler's, except
/// those the wrapper names itself through a member type (Asio looks there first:
/// that is how a wrapper gives its own cancellation slot).
template <template <class, class> class Associator, class Wrapper, class Handler, class Default>
struct inner_associator : Associator<Handler, Default> {
    static typename Associator<Handler, Default>::type get(const Wrapper& h) noexcept
    {
        return Associator<Handler, Default>::get(h.inner());
    }

    static auto get(const Wrapper& h, const Default& d) noexcept
        -> decltype(Associator<Handler, Default>::get(h.inner(), d))
    {
        return Associator<Handler, Default>::get(h.inner(), d);
    }
};

/// Stands in for the executor of an initiation that offers none.
struct no_executor {};

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

/// The executor a handler will complete on: its associated executor, else the
/// initiation's; no_executor when neither names one.
template <class Handler, class Initiation>
auto completion_executor_of(const Handler& handler, const Initiation& initiation)
{
    const auto fallback = initiation_executor(initiation);
    return asio::associated_executor<Handler, decltype(fallback)>::get(handler, fallback);
}

} // namespace tame::detail

// Every associated property of the wrapped handler except its cancellation slot
// (which signalled_handler names itself) is the caller's handler's.
template <template <class, class> class Associator, class Handler, class State, class Default>
struct boost::asio::associator<Associator, tame::detail::signalled_handler<Handler, State>, Default>
    : tame::detail::inner_associator<Associator, tame::detail::signalled_handler<Handler, State>,
                                     Handler, Default> {
};
