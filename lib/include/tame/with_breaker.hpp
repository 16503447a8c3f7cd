#pragma once

#include <tame/breaker.hpp>
#include <tame/error.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

#include <exception>
#include <type_traits>
#include <utility>

namespace tame {

/// with_breaker()'s default judgement of a call that threw: a failure of the
/// upstream, except a cancellation (operation_aborted), which is the caller's
/// doing and is not counted.
struct breaker_outcome {
    enum verdict { success, failure, not_counted };

    verdict operator()(const std::exception_ptr& thrown) const noexcept
    {
        try {
            std::rethrow_exception(thrown);
        } catch (const boost::system::system_error& e) {
            if (e.code() == boost::asio::error::operation_aborted) {
                return not_counted;
            }
        } catch (...) {
        }
        return failure;
    }
};

/// Runs `op` under `b`: at once throws boost::system::system_error with
/// tame::errc::breaker_open when the breaker drops the call (`op` is not
/// started); else awaits `op`, counts it a success if it returns, and judges
/// what it throws with `judge` (a breaker_outcome by default), then rethrows.
///
/// `judge` may return breaker_outcome::success for errors that say nothing
/// against the upstream (a 404, a validation error).
template <class T, class Executor, class Judge = breaker_outcome>
boost::asio::awaitable<T, Executor> with_breaker(breaker& b, boost::asio::awaitable<T, Executor> op,
                                                 Judge judge = {})
{
    auto guard = b.allow();
    if (!guard) {
        throw boost::system::system_error{errc::breaker_open};
    }
    std::exception_ptr thrown;
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(op);
            guard.success();
            co_return;
        } else {
            T value = co_await std::move(op);
            guard.success();
            co_return value;
        }
    } catch (...) {
        thrown = std::current_exception();
    }
    switch (judge(thrown)) {
    case breaker_outcome::success:
        guard.success();
        break;
    case breaker_outcome::failure:
        guard.failure();
        break;
    case breaker_outcome::not_counted:
        guard.ignore();
        break;
    }
    std::rethrow_exception(thrown);
}

} // namespace tame
