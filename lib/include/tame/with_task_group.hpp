#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/operation_aborted.hpp>
#include <tame/on_failure.hpp>
#include <tame/task_group.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <cstddef>
#include <exception>
#include <tuple>
#include <type_traits>
#include <utility>

namespace tame {

namespace detail {
template <class Awaitable>
struct scope_value {
};
template <class T>
struct scope_value<asio::awaitable<T>> {
    using type = T;
};
} // namespace detail

/// The body of a with_task_group(): called once with the group, it returns the
/// coroutine that spawns the group's tasks, `asio::awaitable<T>`.
template <class F>
concept task_group_body = std::is_move_constructible_v<F> && requires(F& f, task_group& group)
{
    typename detail::scope_value<std::invoke_result_t<F&, task_group&>>::type;
};

/// The value a task_group_body's coroutine returns.
template <task_group_body F>
using task_group_body_value_t =
    typename detail::scope_value<std::invoke_result_t<F&, task_group&>>::type;

/// Runs `body(group)` with a new task_group whose tasks run on `ex`, at most
/// `limit` at once (0: no limit), and joins the group before returning,
/// whatever happened: a group that cannot be left unjoined (corral's nursery;
/// Go's errgroup with the `g.Wait()` nobody can forget).
///
/// - The body spawns tasks (`co_await group.spawn(f)` waits for a free slot)
///   and returns; the tasks it started are then awaited.
/// - A task fails: with on_failure::cancel_group (the default), the group is
///   cancelled, the body too (its current await ends with operation_aborted),
///   and once everything has ended, the first failure is thrown. With
///   on_failure::keep_going, nothing is cancelled; the first failure is thrown
///   once the body and every task have ended.
/// - The body throws: the group is cancelled and joined, then the body's
///   exception is thrown (the tasks' operation_aborted is not reported).
/// - The caller is cancelled (terminal): the body and the tasks are cancelled,
///   and still awaited to their end; operation_aborted is thrown unless
///   something failed first.
///
/// Returns what the body returns. Nothing the body or the group started is
/// left running when it returns or throws.
///
/// The body runs as a coroutine of its own on the caller's executor, which
/// must run handlers one at a time (a strand, or an io_context run by one
/// thread), as for with_timeout(). It receives the group by reference: the
/// group lives until with_task_group() returns.
template <task_group_body Body>
asio::awaitable<task_group_body_value_t<Body>>
with_task_group(asio::any_io_executor ex, std::size_t limit, on_failure policy, Body body)
{
    using value_type = task_group_body_value_t<Body>;
    task_group group{ex, limit, policy};

    // The body is a coroutine of its own so that the group can cancel it,
    // through the same source that tells everyone else. Both are named before
    // the co_await: g++ 12 destroys some temporaries made inside one twice.
    auto body_run = body(group);
    auto until_group_cancelled = group.cancellation().bind(asio::as_tuple(asio::use_awaitable));
    const auto caller = co_await asio::this_coro::executor;
    auto outcome =
        co_await asio::co_spawn(caller, std::move(body_run), std::move(until_group_cancelled));
    std::exception_ptr body_failure = std::get<0>(outcome);
    if (body_failure) {
        group.cancel();
    }

    // Join in every case, also when this coroutine has been cancelled (its
    // awaits would then throw before they start): a cancellation that arrives
    // now cancels the group, and the join still waits for it.
    const bool throws_if_cancelled = co_await asio::this_coro::throw_if_cancelled();
    co_await asio::this_coro::throw_if_cancelled(false);
    auto [task_failure] = co_await group.async_join(asio::as_tuple(asio::use_awaitable));
    co_await asio::this_coro::throw_if_cancelled(throws_if_cancelled);
    // Cancelled while joining, the tasks were cut short even if each caught its
    // operation_aborted and returned: the caller is told so.
    const asio::cancellation_state cancelled_by = co_await asio::this_coro::cancellation_state;
    if (!body_failure && !task_failure &&
        cancelled_by.cancelled() != asio::cancellation_type::none) {
        body_failure =
            std::make_exception_ptr(boost::system::system_error{asio::error::operation_aborted});
    }

    // The first failure wins: the body's own, else a task's (which cancelled
    // the body), else the body's operation_aborted (the caller's cancellation).
    if (body_failure && !detail::is_operation_aborted(body_failure)) {
        std::rethrow_exception(body_failure);
    }
    if (task_failure) {
        std::rethrow_exception(task_failure);
    }
    if (body_failure) {
        std::rethrow_exception(body_failure);
    }
    if constexpr (!std::is_void_v<value_type>) {
        co_return std::move(std::get<1>(outcome));
    }
}

/// with_task_group() for a group that fails fast (on_failure::cancel_group).
template <task_group_body Body>
asio::awaitable<task_group_body_value_t<Body>> with_task_group(asio::any_io_executor ex,
                                                               std::size_t limit, Body body)
{
    return with_task_group(std::move(ex), limit, on_failure::cancel_group, std::move(body));
}

} // namespace tame
