#include <tame/task_group.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>
#include <tame_test/peak.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST_CASE("task groups on a multi-threaded io_context keep their limit and account for every task",
          "[stress][task_group]")
{
    constexpr int groups = 40;
    constexpr int tasks_per_group = 100;
    constexpr int limit = 10;
    asio::io_context io{2};
    std::atomic<int> started{0};
    std::atomic<int> ended{0};
    std::atomic<int> spawned{0};
    std::atomic<int> refused{0};
    std::atomic<int> joins_with_failure{0};
    std::atomic<int> joins{0};
    std::size_t worst_peak = 0; // the highest of the groups' peaks

    // The group's own executor is the bare io_context's: run by two threads.
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            for (int g = 0; g < groups; ++g) {
                tame::task_group group{ex, limit};
                tame_test::peak_counter running;
                // Every third group fails at task 50; every third is cancelled
                // from outside while it runs.
                const bool fails = g % 3 == 0;
                const bool cancelled = g % 3 == 1;
                for (int t = 0; t < tasks_per_group; ++t) {
                    auto task = [&, t, fails]() -> asio::awaitable<void> {
                        ++started;
                        const tame_test::peak_counter::scope inside{running};
                        struct leave {
                            std::atomic<int>& ended;
                            ~leave() { ++ended; }
                        } on_exit{ended};
                        asio::steady_timer timer{co_await asio::this_coro::executor,
                                                 std::chrono::microseconds{(t * 37) % 300}};
                        co_await timer.async_wait(asio::use_awaitable);
                        if (fails && t == 50) {
                            throw std::runtime_error{"task 50 failed"};
                        }
                    };
                    auto [ec] =
                        co_await group.async_spawn(task, asio::as_tuple(asio::use_awaitable));
                    if (ec) {
                        ++refused;
                        break;
                    }
                    ++spawned;
                    if (cancelled && t == 30) {
                        std::thread{[&group] { group.cancel(); }}.join();
                    }
                }
                auto [failure] = co_await group.async_join(asio::as_tuple(asio::use_awaitable));
                ++joins;
                if (failure) {
                    ++joins_with_failure;
                }
                CHECK(group.running() == 0);
                worst_peak = std::max(worst_peak, running.peak());
            }
        },
        asio::detached);
    std::thread second{[&io] { io.run(); }};
    io.run();
    second.join();

    CHECK(joins == groups);
    CHECK(started == spawned); // every spawn that succeeded started its task
    CHECK(ended == started);   // and every task ended exactly once
    CHECK(worst_peak <= std::size_t{limit});
    CHECK(refused > 0);
    CHECK(joins_with_failure >= groups / 3);
}
