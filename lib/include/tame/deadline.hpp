#pragma once

#include <tame/cancel_source.hpp>
#include <tame/detail/config.hpp>
#include <tame/detail/deadline_handler.hpp>
#include <tame/detail/wrapping_async_result.hpp>
#include <tame/error.hpp>
#include <tame/time_source.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <chrono>
#include <exception>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

namespace tame {

/// A completion token adapter that cancels an operation still running at a
/// deadline; made by cancel_after() and cancel_at().
///
/// The operation's cancellation slot is bound to a signal that a timer emits at
/// the deadline, with `type`. The operation then completes the way it does when
/// cancelled, usually with `asio::error::operation_aborted`. A cancellation that
/// the caller's own handler would have received (a cancelled coroutine, say) is
/// forwarded to the operation too. When the operation completes, the timer is
/// cancelled at once: no timer outlives its operation.
///
/// The timer runs on the handler's associated executor (else the initiating
/// object's), which must run handlers one at a time — a strand, or an io_context
/// run by one thread — as Asio requires wherever cancellation is emitted.
template <class Token, class Clock = std::chrono::steady_clock>
struct cancel_at_t {
    /// The completion token being adapted.
    Token token;
    /// When the operation is cancelled if it is still running.
    typename Clock::time_point deadline;
    /// The cancellation type the timer emits.
    asio::cancellation_type type = asio::cancellation_type::terminal;
    /// For with_deadline(): set when the deadline fired first; usually null.
    bool* expired = nullptr;
};

/// `token`, with its operation cancelled (with `type`) if it has not completed by
/// `deadline`. Any clock works that Asio's basic_waitable_timer accepts.
template <class Clock, class Duration, class Token>
auto cancel_at(std::chrono::time_point<Clock, Duration> deadline, asio::cancellation_type type,
               Token&& token)
{
    return cancel_at_t<std::decay_t<Token>, Clock>{
        std::forward<Token>(token),
        std::chrono::time_point_cast<typename Clock::duration>(deadline), type};
}

/// cancel_at() with terminal cancellation.
template <class Clock, class Duration, class Token>
auto cancel_at(std::chrono::time_point<Clock, Duration> deadline, Token&& token)
{
    return cancel_at(deadline, asio::cancellation_type::terminal, std::forward<Token>(token));
}

/// `token`, with its operation cancelled (with `type`) if it has not completed
/// within `timeout`, measured on the steady clock.
template <class Rep, class Period, class Token>
auto cancel_after(std::chrono::duration<Rep, Period> timeout, asio::cancellation_type type,
                  Token&& token)
{
    return cancel_at(std::chrono::steady_clock::now() + timeout, type, std::forward<Token>(token));
}

/// cancel_after() with terminal cancellation.
template <class Rep, class Period, class Token>
auto cancel_after(std::chrono::duration<Rep, Period> timeout, Token&& token)
{
    return cancel_after(timeout, asio::cancellation_type::terminal, std::forward<Token>(token));
}

/// Runs `op` until `deadline`: its result or exception when it finishes first;
/// otherwise it is cancelled (terminal) through its cancellation slot, awaited to
/// its end, and the awaitable throws `boost::system::system_error` with
/// `tame::errc::timed_out`, whatever the operation ended with.
///
/// Nothing is left running: unlike Go's `select` on `ctx.Done()`, the operation
/// is over when this returns. A deadline that has already passed fails with
/// timed_out without starting `op`. When deadlines nest, the earliest one wins
/// and reports timed_out. Cancelling the caller cancels `op` and reports what
/// `op` ends with (operation_aborted, usually).
///
/// `op` runs as its own coroutine on the caller's executor, which must run
/// handlers one at a time (a strand, or an io_context run by one thread).
template <class T, class Executor, class Clock, class Duration>
asio::awaitable<T, Executor> with_deadline(asio::awaitable<T, Executor> op,
                                           std::chrono::time_point<Clock, Duration> deadline)
{
    if (deadline <= Clock::now()) {
        throw boost::system::system_error{errc::timed_out};
    }
    bool expired = false;
    auto token = cancel_at(deadline, asio::as_tuple(asio::use_awaitable_t<Executor>{}));
    token.expired = &expired;
    auto ex = co_await asio::this_coro::executor;
    // (exception_ptr) or (exception_ptr, T): the operation's outcome, whatever it is.
    auto outcome = co_await asio::co_spawn(ex, std::move(op), std::move(token));
    // Once the deadline has fired, the operation's own outcome (even a late
    // success) gives way to timed_out; a value it produced is dropped here, so a
    // permit or a socket in it is released, not lost.
    if (expired) {
        throw boost::system::system_error{errc::timed_out};
    }
    if (std::get<0>(outcome)) {
        std::rethrow_exception(std::get<0>(outcome));
    }
    if constexpr (!std::is_void_v<T>) {
        co_return std::move(std::get<1>(outcome));
    }
}

/// with_deadline() at `timeout` from now.
template <class T, class Executor, class Rep, class Period>
asio::awaitable<T, Executor> with_timeout(asio::awaitable<T, Executor> op,
                                          std::chrono::duration<Rep, Period> timeout)
{
    using clock = std::chrono::steady_clock;
    return with_deadline(std::move(op),
                         clock::now() + std::chrono::duration_cast<clock::duration>(timeout));
}

/// with_timeout() with the time measured on `time` rather than the steady
/// clock: a service that takes a time_source (as diagnose does) keeps its
/// deadlines on it, so that a test moves them with a tame::manual_time.
///
/// The same contract: what `op` returns if it ends before `timeout` has passed
/// on `time`; else `op` is cancelled (terminal) at the deadline, awaited to its
/// end, and errc::timed_out is thrown, whatever `op` ended with. A timeout of
/// zero or less throws timed_out without running `op`. A cancellation of the
/// caller reaches `op`. `time` must outlive the call.
///
/// Costlier than the steady-clock overload (a wait on `time` and two
/// cancel_sources instead of one timer): for a deadline around I/O, not
/// around a hot path.
template <class T, class Executor, class Rep, class Period>
asio::awaitable<T, Executor> with_timeout(asio::awaitable<T, Executor> op,
                                          std::chrono::duration<Rep, Period> timeout,
                                          time_source& time)
{
    if (timeout <= timeout.zero()) {
        throw boost::system::system_error{errc::timed_out};
    }
    const auto ex = co_await asio::this_coro::executor;
    cancel_source expired;  // emitted at the deadline: cancels `op`
    cancel_source op_ended; // emitted when `op` has ended: takes back the wait
    time.async_wait_until(ex,
                          time.now() + std::chrono::duration_cast<time_source::duration>(timeout),
                          op_ended.bind(asio::bind_executor(ex, [expired](error_code ec) mutable {
                              if (!ec) {
                                  expired.emit();
                              }
                          })));
    std::exception_ptr failure;
    std::optional<std::conditional_t<std::is_void_v<T>, std::monostate, T>> result;
    try {
        // Named before the co_await: g++ 12 destroys some temporaries made
        // inside one twice.
        auto until_expired = with_cancellation(std::move(op), expired);
        if constexpr (std::is_void_v<T>) {
            co_await std::move(until_expired);
            result.emplace();
        } else {
            result.emplace(co_await std::move(until_expired));
        }
    } catch (...) {
        failure = std::current_exception();
    }
    op_ended.emit();
    // Once the deadline has come, even a late success gives way to timed_out
    // (a value `op` produced is dropped here, and released).
    if (expired.cancelled()) {
        throw boost::system::system_error{errc::timed_out};
    }
    if (failure) {
        std::rethrow_exception(failure);
    }
    if constexpr (!std::is_void_v<T>) {
        co_return std::move(*result);
    }
}

} // namespace tame

template <class Token, class Clock, class... Signatures>
struct boost::asio::async_result<tame::cancel_at_t<Token, Clock>, Signatures...>
    : tame::detail::wrapping_async_result<tame::detail::deadline_initiation<Clock>::template type,
                                          Token, Signatures...> {
};
