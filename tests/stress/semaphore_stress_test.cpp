#include <tame/semaphore.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>
#include <tame_test/peak.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <random>
#include <thread>
#include <vector>

namespace asio = boost::asio;

namespace {

/// Runs `io` on `threads` threads until it runs out of work.
void run_on_threads(asio::io_context& io, int threads)
{
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) {
        pool.emplace_back([&io] { io.run(); });
    }
    for (auto& t : pool) {
        t.join();
    }
}

} // namespace

TEST_CASE("coroutines on several threads never hold more permits than the capacity",
          "[stress][semaphore]")
{
    constexpr std::size_t capacity = 10;
    constexpr int coroutines = 1000;
    constexpr int rounds = 20;
    asio::io_context io{4};
    tame::async_semaphore sem{io, capacity};
    tame_test::peak_counter in_use;
    std::atomic<int> finished{0};

    for (int id = 0; id < coroutines; ++id) {
        asio::co_spawn(
            io,
            [&, id]() -> asio::awaitable<void> {
                for (int round = 0; round < rounds; ++round) {
                    const std::size_t n = 1 + static_cast<std::size_t>((id + round) % 3);
                    auto p = co_await sem.acquire(n);
                    const tame_test::peak_counter::scope held{in_use,
                                                              n}; // leaves before p releases
                    co_await asio::post(io, asio::use_awaitable);
                }
                ++finished;
            },
            asio::detached);
    }
    run_on_threads(io, 4);

    CHECK(finished == coroutines);
    CHECK(in_use.peak() <= capacity);
    CHECK(in_use.peak() > 1);
    CHECK(sem.available() == capacity);
    CHECK(sem.stats().acquired == std::uint64_t{coroutines} * rounds);
}

TEST_CASE("strand-bound waiters are cancelled on their strand while other threads release",
          "[stress][semaphore]")
{
    constexpr std::size_t capacity = 4;
    constexpr int waiters = 200;
    constexpr int rounds = 25;
    asio::io_context io{2};
    tame::async_semaphore sem{io, capacity};
    std::atomic<int> granted{0};
    std::atomic<int> aborted{0};
    std::atomic<int> other{0};

    for (int id = 0; id < waiters; ++id) {
        auto strand = asio::make_strand(io);
        asio::co_spawn(
            strand,
            [&, strand]() -> asio::awaitable<void> {
                for (int round = 0; round < rounds; ++round) {
                    // The emit is posted to the waiter's own strand, where it races
                    // with a grant made by a release on another thread.
                    auto signal = std::make_shared<asio::cancellation_signal>();
                    auto op = sem.async_acquire(
                        1, asio::bind_cancellation_slot(signal->slot(),
                                                        asio::as_tuple(asio::use_awaitable)));
                    asio::post(strand,
                               [signal] { signal->emit(asio::cancellation_type::terminal); });
                    auto [ec, p] = co_await std::move(op);
                    if (!ec && p) {
                        ++granted;
                        co_await asio::post(io, asio::use_awaitable); // hop threads holding it
                    } else if (ec == asio::error::operation_aborted) {
                        ++aborted;
                    } else {
                        ++other;
                    }
                }
            },
            asio::detached);
    }
    run_on_threads(io, 2);

    const auto stats = sem.stats();
    CHECK(other == 0);
    CHECK(aborted > 0);
    CHECK(stats.waited > stats.cancelled); // some were granted after queueing, racing the emit
    CHECK(granted + aborted == waiters * rounds);
    CHECK(stats.cancelled == static_cast<std::uint64_t>(aborted.load()));
    CHECK(sem.waiting() == 0);
    CHECK(sem.available() == capacity);
}

TEST_CASE("permits released from many threads reach queued waiters exactly once",
          "[stress][semaphore]")
{
    constexpr int acquires = 20000;
    asio::io_context io{2};
    tame::async_semaphore sem{io, 3};
    std::vector<std::atomic<int>> completions(acquires);
    std::atomic<int> errors{0};

    for (int i = 0; i < acquires; ++i) {
        sem.async_acquire(1 + i % 2, [&, i](tame::error_code ec, tame::permit p) {
            ++completions[static_cast<std::size_t>(i)];
            if (ec) {
                ++errors;
            }
            // Hand the permit to another handler, which may run on the other thread.
            asio::post(io, [p = std::move(p)]() mutable { p.release(); });
        });
    }
    run_on_threads(io, 2);

    int not_once = 0;
    for (auto& c : completions) {
        not_once += c.load() == 1 ? 0 : 1;
    }
    CHECK(not_once == 0);
    CHECK(errors == 0);
    CHECK(sem.available() == 3);
}

TEST_CASE("try_acquire, set_capacity and cancellation on several threads lose no permit",
          "[stress][semaphore]")
{
    constexpr std::size_t capacity = 8;
    constexpr int acquires = 3000;
    asio::io_context io{3};
    auto work = asio::make_work_guard(io);
    tame::async_semaphore sem{io, capacity};
    std::atomic<bool> stop{false};
    std::atomic<int> outstanding{acquires};
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) {
        threads.emplace_back([&io] { io.run(); });
    }
    for (unsigned seed = 1; seed <= 2; ++seed) {
        threads.emplace_back([&, seed] {
            std::mt19937 rng{seed};
            while (!stop) {
                auto p = sem.try_acquire(1 + rng() % 3);
                std::this_thread::yield();
            }
        });
    }
    threads.emplace_back([&] {
        std::mt19937 rng{99};
        while (!stop) {
            sem.set_capacity(4 + rng() % 8);
            std::this_thread::yield();
        }
    });

    std::mt19937 rng{7};
    for (int i = 0; i < acquires; ++i) {
        auto strand = asio::make_strand(io);
        auto signal = std::make_shared<asio::cancellation_signal>();
        sem.async_acquire(
            1 + rng() % 4,
            asio::bind_cancellation_slot(
                signal->slot(),
                asio::bind_executor(strand, [&, signal](tame::error_code, tame::permit p) {
                    asio::post(io, [p = std::move(p)]() mutable { p.release(); });
                    --outstanding;
                })));
        if (rng() % 2 == 0) {
            asio::post(strand, [signal] { signal->emit(asio::cancellation_type::terminal); });
        }
    }
    while (outstanding > 0) {
        std::this_thread::yield();
    }
    stop = true;
    work.reset();
    for (auto& t : threads) {
        t.join();
    }
    sem.set_capacity(capacity);

    CHECK(sem.waiting() == 0);
    CHECK(sem.available() == capacity);
}

TEST_CASE("a semaphore destroyed while other threads give permits back is freed once",
          "[stress][semaphore]")
{
    // ASan and TSan judge this one: the last of the five references frees the state.
    for (int round = 0; round < 200; ++round) {
        asio::io_context io;
        std::vector<std::thread> releasers;
        {
            tame::async_semaphore sem{io, 4};
            for (int i = 0; i < 4; ++i) {
                releasers.emplace_back([p = sem.try_acquire()]() mutable { p.release(); });
            }
        }
        for (auto& t : releasers) {
            t.join();
        }
    }
    SUCCEED();
}
