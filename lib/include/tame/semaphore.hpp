#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/queued_handler.hpp>
#include <tame/detail/ready_awaitable.hpp>
#include <tame/detail/semaphore_state.hpp>
#include <tame/error.hpp>
#include <tame/permit.hpp>
#include <tame/semaphore_stats.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/assert.hpp>
#include <boost/config.hpp>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

namespace tame {
namespace detail {

/// The arguments of an acquire's handler, for the outcome the state decided.
inline std::tuple<error_code, permit> take_result(semaphore_waiter& waiter) noexcept
{
    switch (waiter.outcome) {
    case acquire_outcome::granted:
        // The permit takes over the waiter's reference to the state.
        return {error_code{}, waiter.owner.release()->adopt_permit(waiter.permits)};
    case acquire_outcome::closed:
        return {errc::closed, permit{}};
    case acquire_outcome::invalid:
        return {asio::error::invalid_argument, permit{}};
    case acquire_outcome::cancelled:
    case acquire_outcome::aborted:
    case acquire_outcome::pending:
        break;
    }
    BOOST_ASSERT(waiter.outcome != acquire_outcome::pending);
    return {asio::error::operation_aborted, permit{}};
}

} // namespace detail

/// A counting semaphore for coroutines and callbacks: weighted, strictly FIFO,
/// cancellable, and safe to use from any thread.
///
/// Waiters are served in the order they arrived: a waiter that needs more permits
/// than are free holds back those behind it, so large requests never starve.
/// Permits come as a move-only tame::permit that gives them back when destroyed.
///
/// Limits: a capacity of 1 to max_capacity (2^31 - 1); up to 2^24 - 1 permits and
/// waiters in existence at once, beyond which try_acquire() refuses and a new
/// waiter throws std::length_error. Running out of memory while scheduling a
/// completion terminates the program, as it does inside Asio's own schedulers.
///
/// Destroying the semaphore completes its waiters with
/// `asio::error::operation_aborted`; it must happen before the execution contexts
/// of those waiters are destroyed (declare the io_context first). Permits may
/// outlive the semaphore: coroutine frames that an io_context destroys after it
/// give their permits back safely.
class async_semaphore {
  public:
    using executor_type = asio::any_io_executor;

    /// The largest capacity a semaphore can have.
    static constexpr std::size_t max_capacity = detail::semaphore_state::max_capacity;

    /// A semaphore with `permits` permits, all free; handlers without an associated
    /// executor complete on `ex`. Throws std::invalid_argument unless
    /// 1 <= permits <= max_capacity.
    async_semaphore(const executor_type& ex, std::size_t permits)
        : executor_{ex}, state_{detail::semaphore_ref::make(checked(permits))}
    {
    }

    /// A semaphore whose default executor is `context`'s.
    template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
    async_semaphore(ExecutionContext& context, std::size_t permits)
        : async_semaphore{context.get_executor(), permits}
    {
    }

    async_semaphore(async_semaphore&&) noexcept = default;

    async_semaphore& operator=(async_semaphore&& other) noexcept
    {
        if (this != &other) {
            abort_waiters();
            executor_ = std::move(other.executor_);
            state_ = std::move(other.state_);
        }
        return *this;
    }

    /// Completes every waiter with `asio::error::operation_aborted`.
    ~async_semaphore() { abort_waiters(); }

    /// The executor of handlers that name none of their own.
    executor_type get_executor() const noexcept { return executor_; }

    /// Waits until `n` permits can be granted in FIFO order, then delivers them.
    ///
    /// Completion signature: `void(error_code, tame::permit)`; the permit is empty
    /// unless the error_code is clear.
    ///
    /// Errors: `asio::error::invalid_argument` when `n` is 0 or above the capacity
    /// (also when a later set_capacity() shrinks the capacity below `n`);
    /// `tame::errc::closed` after close(); `asio::error::operation_aborted` on
    /// cancellation or when the semaphore is destroyed.
    ///
    /// **Cancellation**: terminal, partial and total, through the handler's
    /// cancellation slot. A waiter that is cancelled leaves the queue, which may let
    /// the waiters behind it through; it leaves no trace. A cancellation that
    /// arrives after the permits were granted is too late: the acquire succeeds
    /// and the permit goes back when the caller drops it. Emit on the handler's
    /// executor, as for any Asio operation (on an io_context run by several
    /// threads: on the handler's strand).
    ///
    /// The handler runs on its associated executor (by default the semaphore's),
    /// never inside this call, and counts as outstanding work there while it waits.
    ///
    /// Thread safety: may be called from any thread.
    template <class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, void(error_code, permit)>
    auto async_acquire(std::size_t n,
                       Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return asio::async_initiate<Token, void(error_code, permit)>(initiate_acquire{this}, token,
                                                                     n);
    }

    /// async_acquire() of one permit.
    template <class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, void(error_code, permit)>
    auto async_acquire(Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return async_acquire(1, std::forward<Token>(token));
    }

    /// The coroutine way to acquire: `auto p = co_await sem.acquire();`.
    ///
    /// Takes free permits without suspending the caller; otherwise it waits as
    /// async_acquire() does and throws its errors as boost::system::system_error.
    /// Cancellation reaches it through the calling coroutine's cancellation state.
    ///
    /// The free permits are taken when acquire() is called, so co_await its
    /// result at once (as in the line above).
    BOOST_FORCEINLINE asio::awaitable<permit> acquire(std::size_t n = 1)
    {
        // Not a coroutine itself: when it must wait, the caller awaits Asio's own
        // use_awaitable operation directly, one coroutine frame fewer per wait.
        // Forced inline, with the waiting path out of line, so that a free permit
        // costs what awaiting any nested awaitable costs, in every caller.
        if (permit granted = try_acquire(n)) {
            return detail::ready_awaitable(std::move(granted));
        }
        return wait_for(n);
    }

    /// Takes `n` permits if they are free and nobody waits; an empty permit
    /// otherwise (also when closed, or when `n` is 0 or above the capacity). Never
    /// waits, never overtakes a waiter. Lock-free.
    BOOST_FORCEINLINE permit try_acquire(std::size_t n = 1) noexcept
    {
        BOOST_ASSERT(state_);
        if (n != 0 && state_->try_take(n)) {
            return permit{state_.get(), n};
        }
        return {};
    }

    /// Fails current and later acquires with `tame::errc::closed`. Permits already
    /// held stay valid and are given back as usual. Closing twice does nothing more.
    void close() noexcept { state_->close(detail::acquire_outcome::closed); }

    /// Whether close() was called.
    bool is_closed() const { return state_->is_closed(); }

    /// Changes the number of permits. Growing grants waiters at once. Shrinking
    /// removes free permits first and absorbs the rest from later releases, so
    /// permits already held stay valid; waiters asking for more than the new
    /// capacity fail with `asio::error::invalid_argument`. Throws
    /// std::invalid_argument unless 1 <= permits <= max_capacity.
    void set_capacity(std::size_t permits) { state_->set_capacity(checked(permits)); }

    /// The number of permits the semaphore manages.
    std::size_t capacity() const noexcept { return state_->capacity(); }

    /// Free permits now; a snapshot when other threads acquire and release.
    std::size_t available() const noexcept { return state_->available(); }

    /// Acquisitions queued now.
    std::size_t waiting() const { return state_->waiting(); }

    semaphore_stats stats() const { return state_->stats(); }

  private:
    // Sets the capacity from a permit's release, through the shared state.
    friend class adaptive_limit;

    struct initiate_acquire {
        async_semaphore* self;

        executor_type get_executor() const noexcept { return self->executor_; }

        template <class Handler>
        void operator()(Handler&& handler, std::size_t n) const
        {
            using waiter_type = detail::queued_handler<detail::semaphore_waiter,
                                                       std::decay_t<Handler>, executor_type>;
            detail::semaphore_state* state = self->state_.get();
            waiter_type::template launch<canceller>(
                std::forward<Handler>(handler), self->executor_,
                [state](detail::semaphore_waiter& waiter) { state->start(waiter); }, self->state_,
                n);
        }
    };

    /// Lives in the handler's cancellation slot while the acquire waits.
    struct canceller {
        explicit canceller(detail::semaphore_waiter* w) noexcept : waiter{w} {}

        detail::semaphore_waiter* waiter;

        void operator()(asio::cancellation_type type) const
        {
            if (type != asio::cancellation_type::none) {
                waiter->owner->cancel(*waiter);
            }
        }
    };

    /// acquire()'s slow path, kept out of line so that the fast path stays small.
    BOOST_NOINLINE asio::awaitable<permit> wait_for(std::size_t n)
    {
        return async_acquire(n, asio::use_awaitable);
    }

    static std::size_t checked(std::size_t permits)
    {
        if (permits == 0 || permits > max_capacity) {
            throw std::invalid_argument{"tame::async_semaphore: capacity out of range"};
        }
        return permits;
    }

    void abort_waiters() noexcept
    {
        if (state_) {
            state_->close(detail::acquire_outcome::aborted);
        }
    }

    executor_type executor_;
    detail::semaphore_ref state_;
};

} // namespace tame
