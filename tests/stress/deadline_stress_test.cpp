#include <tame/deadline.hpp>

#include <tame/semaphore.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST_CASE("deadlines on strands of a multi-threaded io_context race completions safely",
          "[stress][deadline]")
{
    constexpr int coroutines = 200;
    constexpr int rounds = 20;
    asio::io_context io{2};
    tame::async_semaphore sem{io, 4};
    std::atomic<int> finished{0};
    std::atomic<int> timed_out{0};
    std::atomic<int> in_time{0};

    for (int id = 0; id < coroutines; ++id) {
        auto strand = asio::make_strand(io);
        asio::co_spawn(
            strand,
            [&, id]() -> asio::awaitable<void> {
                auto hold = [&]() -> asio::awaitable<int> {
                    auto p = co_await sem.acquire();
                    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
                    co_return 1;
                };
                for (int round = 0; round < rounds; ++round) {
                    // Deadlines from 0 to 300 microseconds: some fire before the
                    // grant, some race it, some come too late.
                    const auto timeout = std::chrono::microseconds{(id * 7 + round * 13) % 300};
                    try {
                        co_await tame::with_timeout(hold(), timeout);
                        ++in_time;
                    } catch (const boost::system::system_error&) {
                        ++timed_out;
                    }
                    auto [ec, p] = co_await sem.async_acquire(
                        tame::cancel_after(timeout, asio::as_tuple(asio::use_awaitable)));
                }
                ++finished;
            },
            asio::detached);
    }
    std::thread second{[&io] { io.run(); }};
    io.run();
    second.join();

    CHECK(finished == coroutines);
    CHECK(timed_out > 0); // zero timeouts, at least, expire
    CHECK(in_time + timed_out == coroutines * rounds);
    CHECK(sem.waiting() == 0);
    CHECK(sem.available() == 4);
}
