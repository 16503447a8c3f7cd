#include <tame/cancel_source.hpp>

#include <tame/semaphore.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST_CASE("emits from a foreign thread race bound operations on strands safely",
          "[stress][cancel_source]")
{
    constexpr int coroutines = 100;
    constexpr int rounds = 50;
    asio::io_context io{2};
    tame::async_semaphore sem{io, 3};
    // Each coroutine publishes the source of its current round here; a foreign
    // thread emits them at random while operations bound to a child come and go.
    std::mutex published_mutex;
    std::vector<tame::cancel_source> published(coroutines);
    std::atomic<int> completed{0};
    std::atomic<int> aborted{0};
    std::atomic<int> finished{0};
    std::atomic<std::size_t> left_bound{0};

    for (int id = 0; id < coroutines; ++id) {
        asio::co_spawn(
            asio::make_strand(io),
            [&, id]() -> asio::awaitable<void> {
                auto ex = co_await asio::this_coro::executor;
                asio::steady_timer timer{ex};
                for (int round = 0; round < rounds; ++round) {
                    tame::cancel_source parent;
                    {
                        std::lock_guard lock{published_mutex};
                        published[id] = parent;
                    }
                    tame::cancel_source child = parent.make_child();
                    timer.expires_after(std::chrono::microseconds{(id * 7 + round * 13) % 200});
                    auto [timer_ec] =
                        co_await timer.async_wait(child.bind(asio::as_tuple(asio::use_awaitable)));
                    auto [acquire_ec, p] =
                        co_await sem.async_acquire(child.bind(asio::as_tuple(asio::use_awaitable)));
                    co_await asio::post(ex, asio::use_awaitable);
                    for (auto ec : {timer_ec, acquire_ec}) {
                        ++(ec ? aborted : completed);
                    }
                    left_bound += child.bound();
                }
                ++finished;
            },
            asio::detached);
    }
    std::atomic<bool> stop{false};
    std::thread emitter{[&] {
        for (unsigned i = 0; !stop.load(); ++i) {
            tame::cancel_source target;
            {
                std::lock_guard lock{published_mutex};
                target = published[(i * 37) % coroutines];
            }
            target.emit(i % 2 == 0 ? asio::cancellation_type::terminal
                                   : asio::cancellation_type::partial);
            std::this_thread::sleep_for(20us);
        }
    }};
    std::thread second{[&io] { io.run(); }};
    io.run();
    second.join();
    stop = true;
    emitter.join();

    CHECK(finished == coroutines);
    CHECK(completed + aborted == coroutines * rounds * 2);
    CHECK(aborted > 0);
    CHECK(completed > 0);
    CHECK(left_bound == 0);
    CHECK(sem.available() == 3);
}
