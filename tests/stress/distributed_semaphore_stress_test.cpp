#include <tame/redis/distributed_semaphore.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>
#include <tame_test/peak.hpp>
#include <tame_test/redis_server.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <random>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST_CASE("coroutines on four threads and three connections never hold more distributed permits "
          "than the capacity, and give every one back",
          "[stress][redis]")
{
    constexpr std::size_t capacity = 4;
    constexpr int coroutines = 60;
    constexpr int rounds = 5;
    tame_test::redis_server server;
    asio::io_context io{4};
    std::vector<std::unique_ptr<tame::redis::connection>> conns;
    std::vector<std::unique_ptr<tame::distributed_semaphore>> sems;
    for (int i = 0; i < 3; ++i) {
        tame::redis::connection_options o;
        o.url = server.url();
        conns.push_back(std::make_unique<tame::redis::connection>(io.get_executor(), o));
        sems.push_back(
            std::make_unique<tame::distributed_semaphore>(*conns.back(), "stress", capacity));
    }
    tame_test::peak_counter held;
    std::atomic<int> finished{0};
    std::atomic<int> granted{0};

    for (int id = 0; id < coroutines; ++id) {
        // Each coroutine on a strand of its own: a cancellation signal is
        // emitted from the strand its operation completes on.
        auto strand = asio::make_strand(io);
        asio::co_spawn(
            strand,
            [&, id, strand]() -> asio::awaitable<void> {
                std::mt19937 random{static_cast<unsigned>(id)};
                auto& sem = *sems[static_cast<std::size_t>(id) % sems.size()];
                for (int round = 0; round < rounds; ++round) {
                    const std::size_t n = 1 + random() % 2;
                    // Shared with the timer's handler, which may run after this round.
                    auto cancel = std::make_shared<asio::cancellation_signal>();
                    asio::steady_timer cancel_timer{strand,
                                                    std::chrono::milliseconds{random() % 10}};
                    const bool cancels = random() % 3 == 0;
                    if (cancels) {
                        cancel_timer.async_wait([cancel](boost::system::error_code ec) {
                            if (!ec) {
                                cancel->emit(asio::cancellation_type::terminal);
                            }
                        });
                    }
                    auto [ec, permit] = co_await sem.async_acquire(
                        n, asio::bind_cancellation_slot(cancel->slot(),
                                                        asio::as_tuple(asio::use_awaitable)));
                    cancel_timer.cancel();
                    if (ec) {
                        continue;
                    }
                    granted.fetch_add(1);
                    {
                        const tame_test::peak_counter::scope holding{held, n};
                        asio::steady_timer work{strand, std::chrono::milliseconds{random() % 3}};
                        co_await work.async_wait(asio::use_awaitable);
                    }
                    permit.release();
                }
                finished.fetch_add(1);
            },
            asio::detached);
    }
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
        threads.emplace_back([&] {
            while (finished.load() < coroutines && !io.stopped()) {
                io.run_for(10ms);
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    // The last releases travel on three connections: Redis has them all soon.
    tame::distributed_semaphore_stats after;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    do {
        auto stats = sems[0]->async_stats(asio::use_future);
        while (stats.wait_for(0s) != std::future_status::ready) {
            io.restart();
            io.run_for(10ms);
        }
        after = stats.get();
    } while ((after.used != 0 || after.waiting != 0) &&
             std::chrono::steady_clock::now() < deadline);

    CHECK(finished.load() == coroutines);
    CHECK(held.peak() <= capacity);
    CHECK(granted.load() > 0);
    CHECK(after.used == 0);
    CHECK(after.waiting == 0);
}
