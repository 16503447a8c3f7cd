// A test of a shutdown's grace period that waits for nothing: the pool's clock
// is a manual_time, which moves only when the test advances it.
#include <tame/manual_time.hpp>
#include <tame/task_pool.hpp>

#include <boost/asio.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>

namespace asio = boost::asio;
using namespace std::chrono_literals;

int main()
{
    asio::io_context io;
    auto time = std::make_shared<tame::manual_time>();
    tame::task_pool_options options;
    options.time = time; // the pool's grace periods are measured on it
    tame::task_pool pool{io, options};

    // A report that takes an hour, on a real timer the shutdown will cancel.
    pool.async_submit(
        []() -> asio::awaitable<void> {
            asio::steady_timer report{co_await asio::this_coro::executor, 1h};
            co_await report.async_wait(asio::use_awaitable);
        },
        [](tame::error_code) {});
    std::optional<std::size_t> cancelled;
    pool.async_shutdown(30s, [&](std::size_t n) { cancelled = n; });

    io.poll();
    time->advance(29s);
    io.poll();
    std::printf("after 29 s: %s\n", cancelled ? "shut down" : "still in its grace period");
    const bool waited = !cancelled;

    time->advance(1s);
    io.poll();
    std::printf("after 30 s: %zu task(s) cancelled\n", cancelled.value_or(0));
    return waited && cancelled == 1u ? 0 : 1;
}
