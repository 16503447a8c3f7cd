#pragma once

#include <tame/adaptive_permit.hpp>
#include <tame/detail/config.hpp>
#include <tame/detail/signalled_handler.hpp>
#include <tame/error.hpp>

#include <boost/asio/associator.hpp>

#include <utility>

namespace tame::detail {

/// The handler an adaptive_limit gives its semaphore: turns the granted permit
/// into an adaptive_permit for the caller's handler, whose associated executor,
/// allocator and cancellation slot it presents as its own. It holds a waiter's
/// reference to the limit's state until it runs (or is destroyed uncalled).
template <class Handler>
class adaptive_acquire_handler {
  public:
    adaptive_acquire_handler(Handler handler, adaptive_limit_state* state) noexcept(
        std::is_nothrow_move_constructible_v<Handler>)
        : handler_{std::move(handler)}, state_{state}
    {
    }

    adaptive_acquire_handler(adaptive_acquire_handler&& other) noexcept(
        std::is_nothrow_move_constructible_v<Handler>)
        : handler_{std::move(other.handler_)}, state_{std::exchange(other.state_, nullptr)}
    {
    }

    adaptive_acquire_handler& operator=(adaptive_acquire_handler&&) = delete;

    ~adaptive_acquire_handler()
    {
        if (state_ != nullptr) {
            state_->drop_waiter();
        }
    }

    void operator()(error_code ec, permit granted)
    {
        auto adopted = std::exchange(state_, nullptr)->adopt_waited(std::move(granted));
        std::move(handler_)(ec, std::move(adopted));
    }

    const Handler& inner() const noexcept { return handler_; }

  private:
    Handler handler_;
    adaptive_limit_state* state_;
};

} // namespace tame::detail

// Every associated property is the caller's handler's.
template <template <class, class> class Associator, class Handler, class Default>
struct boost::asio::associator<Associator, tame::detail::adaptive_acquire_handler<Handler>, Default>
    : tame::detail::inner_associator<Associator, tame::detail::adaptive_acquire_handler<Handler>,
                                     Handler, Default> {
};
