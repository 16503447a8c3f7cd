#include <tame/task_pool.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>
#include <tame_test/peak.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

/// What the stress test knows of each task.
struct task_trace {
    std::atomic<int> began{0};
    std::atomic<int> ended{0};
};

} // namespace

TEST_CASE("a pool on a multi-threaded io_context accounts for 100k tasks exactly once under "
          "suspends, exceptions, cancellations, keys and resizes",
          "[stress][task_pool]")
{
    constexpr int submitters = 4;
    constexpr int per_submitter = 25'000;
    constexpr int total = submitters * per_submitter;
    constexpr int keys = 7;
    constexpr std::size_t max_capacity = 48;

    asio::io_context io{2};
    std::atomic<int> reported{0};
    tame::task_pool_options options;
    options.capacity = 32;
    options.on_exception = [&](std::exception_ptr) { ++reported; };
    tame::task_pool pool{io, options};

    std::vector<task_trace> traces(total);
    std::array<tame_test::peak_counter, keys> key_inside;
    tame_test::peak_counter inside;
    std::atomic<int> thrown_to_runs{0};
    std::atomic<int> wrong_values{0};
    std::atomic<int> submitters_done{0};

    // Task i: a coroutine that suspends (a post, or a short timer), touches state
    // shared with handlers it posts to its own executor (a race unless that is a
    // strand), and throws when i % 97 == 0. Every fifth task is keyed, except
    // those run with async_run (every eleventh).
    auto make_task = [&](int i) {
        return [&, i]() -> asio::awaitable<int> {
            task_trace& trace = traces[static_cast<std::size_t>(i)];
            ++trace.began;
            const tame_test::peak_counter::scope in_pool{inside};
            const bool is_keyed = i % 5 == 0 && i % 11 != 0; // as submitted below
            std::optional<tame_test::peak_counter::scope> in_key;
            if (is_keyed) {
                in_key.emplace(key_inside[static_cast<std::size_t>(i % keys)]);
            }
            struct leave {
                task_trace& trace;
                ~leave() { ++trace.ended; }
            } on_exit{trace};

            auto ex = co_await asio::this_coro::executor;
            auto shared = std::make_shared<int>(0); // plain int: only the strand keeps it safe
            asio::post(ex, [shared] { ++*shared; });
            if (i % 10 == 0) {
                asio::steady_timer timer{ex, std::chrono::microseconds{(i * 37) % 200}};
                co_await timer.async_wait(asio::use_awaitable);
            } else {
                co_await asio::post(ex, asio::use_awaitable);
            }
            ++*shared;
            if (i % 97 == 0) {
                throw std::runtime_error{"task failed"};
            }
            co_return i;
        };
    };

    for (int s = 0; s < submitters; ++s) {
        asio::co_spawn(
            io,
            [&, s]() -> asio::awaitable<void> {
                for (int n = 0; n < per_submitter; ++n) {
                    const int i = s * per_submitter + n;
                    const bool is_keyed = i % 5 == 0;
                    if (i % 11 == 0) { // never keyed
                        // async_run: the value or the exception comes back here.
                        auto [e, value] = co_await pool.async_run(
                            make_task(i), asio::as_tuple(asio::use_awaitable));
                        if (!e && value != i) {
                            ++wrong_values;
                        }
                        if (e) {
                            try {
                                std::rethrow_exception(e);
                            } catch (const boost::system::system_error&) {
                                // cancelled by the meddler
                            } catch (const std::runtime_error&) {
                                ++thrown_to_runs;
                            }
                        }
                        continue;
                    }
                    auto task = make_task(i);
                    if (is_keyed) {
                        co_await pool.async_submit(tame::keyed{i % keys}, std::move(task),
                                                   asio::use_awaitable);
                    } else {
                        co_await pool.async_submit(std::move(task), asio::use_awaitable);
                    }
                }
                ++submitters_done;
            },
            asio::detached);
    }

    // Meanwhile, from a foreign thread: cancel everything now and then, and
    // resize the pool up and down.
    std::thread meddler{[&] {
        std::size_t capacity = 32;
        while (submitters_done.load() < submitters) {
            std::this_thread::sleep_for(2ms);
            pool.cancel_all();
            capacity = capacity == 32 ? max_capacity : 16;
            pool.resize(capacity);
        }
    }};
    std::thread second{[&io] { io.run(); }};
    io.run();
    second.join();
    meddler.join();

    const auto stats = pool.stats();
    int began = 0;
    int twice = 0;
    int unended = 0;
    for (const auto& trace : traces) {
        began += trace.began.load();
        twice += trace.began.load() > 1 ? 1 : 0;
        unended += trace.began.load() != trace.ended.load() ? 1 : 0;
    }
    CHECK(twice == 0);
    CHECK(unended == 0);
    for (const auto& key : key_inside) {
        CHECK(key.peak() <= 1u); // same-key tasks never overlap
    }
    CHECK(wrong_values == 0);
    CHECK(inside.peak() <= max_capacity);
    CHECK(stats.running == 0);
    CHECK(stats.waiting == 0);
    CHECK(stats.submitted == stats.completed + stats.failed + stats.cancelled);
    CHECK(static_cast<int>(stats.submitted) >= began); // some never began: cancelled first
    CHECK(static_cast<int>(stats.submitted) <= total);
    CHECK(stats.cancelled > 0);
    CHECK(static_cast<int>(stats.failed) == reported + thrown_to_runs);
    CHECK(reported > 0);
}

TEST_CASE("async_shutdown on a two-thread io_context, with a grace period as long as the work",
          "[stress][task_pool]")
{
    // The grace timer, the drain and the tasks end at about the same time, on
    // two threads: the shutdown's steps must not race (TSan watches).
    int shutdowns = 0;
    for (int i = 0; i < 100; ++i) {
        asio::io_context io{2};
        auto work = asio::make_work_guard(io);
        std::thread first{[&] { io.run(); }};
        std::thread second{[&] { io.run(); }};
        {
            tame::task_pool pool{io};
            for (int k = 0; k < 4; ++k) {
                pool.async_submit(
                    []() -> asio::awaitable<void> {
                        asio::steady_timer timer{co_await asio::this_coro::executor, 1ms};
                        co_await timer.async_wait(asio::use_awaitable);
                    },
                    [](tame::error_code) {});
            }
            std::promise<std::size_t> done;
            pool.async_shutdown(std::chrono::microseconds{900 + (i % 7) * 50},
                                [&](std::size_t n) { done.set_value(n); });
            CHECK(done.get_future().get() <= 4);
            CHECK(pool.running() == 0);
            ++shutdowns;
        }
        work.reset();
        first.join();
        second.join();
    }
    CHECK(shutdowns == 100);
}

TEST_CASE("no task starts after a drain that followed close() has completed", "[stress][task_pool]")
{
    // Submitters race close() + async_drain(): once the drain has completed,
    // nothing may start.
    int late_starts = 0;
    for (int i = 0; i < 300; ++i) {
        asio::io_context io{2};
        auto work = asio::make_work_guard(io);
        std::thread runner{[&] { io.run(); }};
        {
            tame::task_pool pool{io};
            std::atomic<bool> drained{false};
            std::atomic<int> late{0};
            std::thread submitter{[&] {
                for (int k = 0; k < 50; ++k) {
                    (void)pool.try_submit([&] {
                        if (drained.load()) {
                            ++late;
                        }
                    });
                }
            }};
            pool.close();
            std::promise<void> done;
            pool.async_drain([&](tame::error_code) {
                drained = true;
                done.set_value();
            });
            done.get_future().get();
            submitter.join();
            // A second drain waits for anything wrongly admitted after the first.
            std::promise<void> again;
            pool.async_drain([&](tame::error_code) { again.set_value(); });
            again.get_future().get();
            late_starts += late.load();
        }
        work.reset();
        runner.join();
    }
    CHECK(late_starts == 0);
}
