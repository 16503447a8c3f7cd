// A slow upstream call under a deadline: with_timeout cancels it and waits for it to end,
// so nothing is left running, and cancel_after bounds a single operation the same way.
#include <tame/deadline.hpp>
#include <tame/semaphore.hpp>

#include <boost/asio.hpp>

#include <chrono>
#include <cstdio>

namespace asio = boost::asio;
using namespace std::chrono_literals;

bool upstream_still_running = false;

asio::awaitable<int> slow_upstream()
{
    upstream_still_running = true;
    asio::steady_timer reply{co_await asio::this_coro::executor, 300ms};
    try {
        co_await reply.async_wait(asio::use_awaitable); // cancelled at the deadline
    } catch (...) {
        upstream_still_running = false;
        throw;
    }
    upstream_still_running = false;
    co_return 42;
}

asio::awaitable<void> diagnose(tame::async_semaphore& upstream_slots)
{
    try {
        int answer = co_await tame::with_timeout(slow_upstream(), 50ms);
        std::printf("answer: %d\n", answer);
    } catch (const boost::system::system_error& e) {
        // By now the upstream call has ended: no goroutine-style leftover.
        std::printf("upstream: %s (still running: %s)\n", e.code().message().c_str(),
                    upstream_still_running ? "yes" : "no");
    }

    // Any Asio operation takes a deadline through its completion token.
    auto held = upstream_slots.try_acquire();
    auto [ec, permit] = co_await upstream_slots.async_acquire(
        tame::cancel_after(20ms, asio::as_tuple(asio::use_awaitable)));
    std::printf("waiting for a slot: %s\n", ec.message().c_str());
}

int main()
{
    asio::io_context io;
    tame::async_semaphore upstream_slots{io, 1};
    asio::co_spawn(io, diagnose(upstream_slots), asio::detached);
    io.run(); // returns at once when diagnose() ends: no timer is left behind
    return upstream_still_running ? 1 : 0;
}
