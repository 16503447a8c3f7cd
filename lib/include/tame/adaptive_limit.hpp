#pragma once

#include <tame/adaptive_permit.hpp>
#include <tame/detail/adaptive_acquire_handler.hpp>
#include <tame/detail/config.hpp>
#include <tame/detail/ready_awaitable.hpp>
#include <tame/limit_algorithm.hpp>
#include <tame/semaphore.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/config.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace tame {

/// A concurrency limit that moves with what the calls under it measure: an
/// async_semaphore whose capacity a limit_algorithm (tame::gradient2_limit,
/// tame::aimd_limit, or one of the application's) sets after every call, from
/// the call's round-trip time, the permits in flight and whether it was
/// dropped. Netflix concurrency-limits' idea, with tame's waiting acquire:
/// callers over the limit queue in FIFO order (or use try_acquire() to refuse
/// at once, as Netflix's SimpleLimiter does).
///
///     tame::adaptive_limit upstream{ex, tame::gradient2_limit{}};
///     auto p = co_await upstream.acquire();
///     auto answer = co_await call();   // throws: p is ignored (not a sample)
///     p.success();                     // or p.dropped() on a timeout
///
/// Shrinking the limit never takes permits back: calls in flight finish, and
/// new ones wait until fewer than the limit are held.
///
/// Destroying the limit completes its waiters with
/// `asio::error::operation_aborted`; permits may outlive it.
///
/// Thread safety: every member may be called from any thread. Samples are
/// taken under a lock, one at a time.
class adaptive_limit {
  public:
    using executor_type = asio::any_io_executor;
    using clock_function = detail::adaptive_limit_state::clock_function;

    /// A limit on `ex` moved by `algorithm`; `clock` times the calls (the steady
    /// clock when empty; a test gives one it moves).
    adaptive_limit(const executor_type& ex, std::unique_ptr<limit_algorithm> algorithm,
                   clock_function clock = {})
        : semaphore_{ex, checked(algorithm)->initial_limit()},
          state_{new detail::adaptive_limit_state{std::move(algorithm), semaphore_.state_,
                                                  std::move(clock)}}
    {
    }

    /// A limit moved by a copy of `algorithm`.
    template <std::derived_from<limit_algorithm> Algorithm>
    adaptive_limit(const executor_type& ex, Algorithm algorithm, clock_function clock = {})
        : adaptive_limit{ex, std::make_unique<Algorithm>(std::move(algorithm)), std::move(clock)}
    {
    }

    /// A limit whose default executor is `context`'s.
    template <class ExecutionContext, std::derived_from<limit_algorithm> Algorithm>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
    adaptive_limit(ExecutionContext& context, Algorithm algorithm, clock_function clock = {})
        : adaptive_limit{context.get_executor(), std::move(algorithm), std::move(clock)}
    {
    }

    adaptive_limit(const adaptive_limit&) = delete;
    adaptive_limit& operator=(const adaptive_limit&) = delete;

    /// Completes every waiter with `asio::error::operation_aborted`.
    ~adaptive_limit() { state_->drop_owner(); }

    executor_type get_executor() const noexcept { return semaphore_.get_executor(); }

    /// Waits for a permit under the limit, in FIFO order.
    ///
    /// Completion signature: `void(error_code, tame::adaptive_permit)`.
    /// Errors, **cancellation** (terminal, partial, total: the waiter leaves the
    /// queue and no trace), where the handler runs and thread safety: as
    /// async_semaphore::async_acquire().
    template <class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, void(error_code, adaptive_permit)>
    auto async_acquire(Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return asio::async_initiate<Token, void(error_code, adaptive_permit)>(
            initiate_acquire{this}, token);
    }

    /// The coroutine way: `auto p = co_await limit.acquire();`. Takes a free
    /// permit without suspending; otherwise waits as async_acquire() and throws
    /// its errors. co_await the result at once.
    BOOST_FORCEINLINE asio::awaitable<adaptive_permit> acquire()
    {
        if (adaptive_permit granted = try_acquire()) {
            return detail::ready_awaitable(std::move(granted));
        }
        return wait();
    }

    /// A permit if one is free under the limit and nobody waits; an empty one
    /// otherwise. Never waits.
    adaptive_permit try_acquire() noexcept
    {
        if (permit p = semaphore_.try_acquire()) {
            return state_->adopt(std::move(p));
        }
        return {};
    }

    /// Fails current and later acquires with `tame::errc::closed`.
    void close() noexcept { semaphore_.close(); }

    /// The limit now (the semaphore's capacity).
    std::size_t limit() const noexcept { return state_->limit(); }
    /// Permits held now.
    std::size_t in_flight() const noexcept { return state_->in_flight(); }
    /// Acquires waiting now.
    std::size_t waiting() const { return semaphore_.waiting(); }
    adaptive_limit_stats stats() const noexcept { return state_->stats(); }

    /// The semaphore the limit sets, for metrics_registry::add_semaphore().
    const async_semaphore& semaphore() const noexcept { return semaphore_; }

  private:
    struct initiate_acquire {
        adaptive_limit* self;

        executor_type get_executor() const noexcept { return self->get_executor(); }

        template <class Handler>
        void operator()(Handler&& handler) const
        {
            self->state_->add_waiter();
            self->semaphore_.async_acquire(1,
                                           detail::adaptive_acquire_handler<std::decay_t<Handler>>{
                                               std::forward<Handler>(handler), self->state_});
        }
    };

    BOOST_NOINLINE asio::awaitable<adaptive_permit> wait()
    {
        return async_acquire(asio::use_awaitable);
    }

    static const std::unique_ptr<limit_algorithm>&
    checked(const std::unique_ptr<limit_algorithm>& algorithm)
    {
        if (!algorithm) {
            throw std::invalid_argument{"tame::adaptive_limit: no algorithm"};
        }
        return algorithm;
    }

    async_semaphore semaphore_;
    detail::adaptive_limit_state* state_;
};

} // namespace tame
