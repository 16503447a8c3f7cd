#pragma once

#include <tame/error.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <chrono>
#include <optional>

namespace tame_test {

/// A task factory: the task waits an hour on a real timer, records how its
/// wait ended in `ended`, and rethrows a failure (a cancellation, say).
inline auto sleeper(std::optional<tame::error_code>& ended)
{
    namespace asio = boost::asio;
    return [&ended]() -> asio::awaitable<void> {
        asio::steady_timer timer{co_await asio::this_coro::executor, std::chrono::hours{1}};
        try {
            co_await timer.async_wait(asio::use_awaitable);
            ended = tame::error_code{};
        } catch (const boost::system::system_error& e) {
            ended = e.code();
            throw;
        }
    };
}

} // namespace tame_test
