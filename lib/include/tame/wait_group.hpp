#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/queued_handler.hpp>
#include <tame/detail/wait_group_state.hpp>
#include <tame/error.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/assert.hpp>

#include <cstddef>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace tame {
namespace detail {

/// The arguments of a wait's handler, for the outcome the state decided.
inline std::tuple<error_code> take_result(wait_group_waiter& waiter) noexcept
{
    BOOST_ASSERT(waiter.outcome != wait_outcome::pending);
    if (waiter.outcome == wait_outcome::zero) {
        return {error_code{}};
    }
    return {asio::error::operation_aborted};
}

} // namespace detail

/// Go's sync.WaitGroup for Asio: a counter of outstanding work, and an
/// asynchronous wait for it to reach zero.
///
/// `add(n)` before starting work, `done()` when each piece ends, `async_wait()`
/// to learn that all have ended. Every member may be called from any thread.
///
/// The wait_group must be destroyed before the execution contexts of its
/// waiters; destroying it completes the waiters with
/// `asio::error::operation_aborted`.
class wait_group {
  public:
    using executor_type = asio::any_io_executor;

    /// An empty group; handlers without an associated executor complete on `ex`.
    explicit wait_group(const executor_type& ex)
        : executor_{ex}, state_{std::make_shared<detail::wait_group_state>()}
    {
    }

    /// A group whose default executor is `context`'s.
    template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
    explicit wait_group(ExecutionContext& context) : wait_group{context.get_executor()} {}

    wait_group(wait_group&&) noexcept = default;

    wait_group& operator=(wait_group&& other) noexcept
    {
        if (this != &other) {
            abort_waiters();
            executor_ = std::move(other.executor_);
            state_ = std::move(other.state_);
        }
        return *this;
    }

    /// Completes every waiter with `asio::error::operation_aborted`.
    ~wait_group() { abort_waiters(); }

    /// The executor of handlers that name none of their own.
    executor_type get_executor() const noexcept { return executor_; }

    /// Adds `n` to the count of outstanding work.
    void add(std::size_t n = 1) noexcept { state_->add(n); }

    /// Marks one piece of work as ended; at zero every waiter completes. Calling
    /// it more often than add() is a bug: it asserts (and is ignored when
    /// assertions are off).
    void done() noexcept { state_->done(); }

    /// The outstanding count now; a snapshot when other threads add and finish.
    std::size_t count() const noexcept { return state_->count(); }

    /// Waits until the count is zero.
    ///
    /// Completion signature: `void(error_code)`. When the count is zero already it
    /// completes at once, through the executor.
    ///
    /// Errors: `asio::error::operation_aborted` on cancellation or when the
    /// wait_group is destroyed.
    ///
    /// **Cancellation**: terminal, partial and total, through the handler's
    /// cancellation slot; the wait leaves the group and nothing else changes.
    ///
    /// The handler runs on its associated executor (by default the group's), never
    /// inside this call, and counts as outstanding work there while it waits.
    ///
    /// Thread safety: may be called from any thread.
    template <class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, void(error_code)>
    auto async_wait(Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return asio::async_initiate<Token, void(error_code)>(initiate_wait{this}, token);
    }

  private:
    struct initiate_wait {
        wait_group* self;

        executor_type get_executor() const noexcept { return self->executor_; }

        template <class Handler>
        void operator()(Handler&& handler) const
        {
            using waiter_type = detail::queued_handler<detail::wait_group_waiter,
                                                       std::decay_t<Handler>, executor_type>;
            auto& state = *self->state_;
            waiter_type::template launch<canceller>(
                std::forward<Handler>(handler), self->executor_,
                [&state](detail::wait_group_waiter& waiter) { state.start(waiter); }, self->state_);
        }
    };

    /// Lives in the handler's cancellation slot while the wait is queued.
    struct canceller {
        explicit canceller(detail::wait_group_waiter* w) noexcept : waiter{w} {}

        detail::wait_group_waiter* waiter;

        void operator()(asio::cancellation_type type) const
        {
            if (type != asio::cancellation_type::none) {
                waiter->owner->cancel(*waiter);
            }
        }
    };

    void abort_waiters() noexcept
    {
        if (state_) {
            state_->abort();
        }
    }

    executor_type executor_;
    std::shared_ptr<detail::wait_group_state> state_;
};

} // namespace tame
