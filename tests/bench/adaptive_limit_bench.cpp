// tame::adaptive_limit against the plain async_semaphore it drives, doing the
// same job in the same binary: what a sample per call (two clock reads, the
// algorithm under a lock) adds to an acquire and release.
//
//   (a) uncontended: co_await acquire() + release, and try_acquire() + release
//   (b) 64 coroutines share 10 permits, holding each across a co_await post,
//       on one thread (the limit held at 10: min = max, so it never moves, but
//       every sample runs Gradient2's arithmetic)
#include <tame/adaptive_limit.hpp>
#include <tame/aimd_limit.hpp>
#include <tame/gradient2_limit.hpp>
#include <tame/semaphore.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>

namespace asio = boost::asio;

namespace {

constexpr std::size_t permits = 10;

tame::gradient2_limit fixed_gradient2()
{
    tame::gradient2_options o;
    o.min_limit = o.initial_limit = o.max_limit = permits;
    return tame::gradient2_limit{o};
}

tame::aimd_limit fixed_aimd()
{
    tame::aimd_options o;
    o.min_limit = o.initial_limit = o.max_limit = permits;
    return tame::aimd_limit{o};
}

// ---- (a) uncontended ---------------------------------------------------------

void semaphore_co_await_acquire(benchmark::State& state)
{
    asio::io_context io{1};
    tame::async_semaphore sem{io, permits};
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            for (auto _ : state) {
                auto p = co_await sem.acquire();
                benchmark::DoNotOptimize(p);
            }
        },
        asio::detached);
    io.run();
}
BENCHMARK(semaphore_co_await_acquire);

template <class Algorithm>
void limit_co_await_acquire(benchmark::State& state, Algorithm algorithm)
{
    asio::io_context io{1};
    tame::adaptive_limit limit{io, algorithm};
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            for (auto _ : state) {
                auto p = co_await limit.acquire();
                benchmark::DoNotOptimize(p);
                p.success();
            }
        },
        asio::detached);
    io.run();
}
BENCHMARK_CAPTURE(limit_co_await_acquire, gradient2, fixed_gradient2());
BENCHMARK_CAPTURE(limit_co_await_acquire, aimd, fixed_aimd());

void semaphore_try_acquire(benchmark::State& state)
{
    asio::io_context io{1};
    tame::async_semaphore sem{io, permits};
    for (auto _ : state) {
        auto p = sem.try_acquire();
        benchmark::DoNotOptimize(p);
    }
}
BENCHMARK(semaphore_try_acquire);

void limit_try_acquire(benchmark::State& state)
{
    asio::io_context io{1};
    tame::adaptive_limit limit{io, fixed_gradient2()};
    for (auto _ : state) {
        auto p = limit.try_acquire();
        benchmark::DoNotOptimize(p);
        p.success();
    }
}
BENCHMARK(limit_try_acquire);

void limit_try_acquire_ignored(benchmark::State& state)
{
    // No sample: what the permit costs without the clock and the algorithm.
    asio::io_context io{1};
    tame::adaptive_limit limit{io, fixed_gradient2()};
    for (auto _ : state) {
        auto p = limit.try_acquire();
        benchmark::DoNotOptimize(p);
    }
}
BENCHMARK(limit_try_acquire_ignored);

// ---- (b) contended -----------------------------------------------------------

constexpr int coroutines = 64;
constexpr int rounds = 1000;

template <class Spawn>
void run_contended(benchmark::State& state, Spawn spawn)
{
    for (auto _ : state) {
        asio::io_context io{1};
        spawn(io);
        io.run();
    }
    const double ops = static_cast<double>(coroutines) * rounds;
    state.counters["per_acquire"] = benchmark::Counter(
        ops, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void semaphore_contended(benchmark::State& state)
{
    run_contended(state, [](asio::io_context& io) {
        auto sem = std::make_shared<tame::async_semaphore>(io, permits);
        for (int i = 0; i < coroutines; ++i) {
            asio::co_spawn(
                io,
                [sem]() -> asio::awaitable<void> {
                    auto ex = co_await asio::this_coro::executor;
                    for (int r = 0; r < rounds; ++r) {
                        auto p = co_await sem->acquire();
                        co_await asio::post(ex, asio::use_awaitable);
                    }
                },
                asio::detached);
        }
    });
}
BENCHMARK(semaphore_contended)->Unit(benchmark::kMillisecond)->UseRealTime();

void limit_contended(benchmark::State& state)
{
    run_contended(state, [](asio::io_context& io) {
        auto limit = std::make_shared<tame::adaptive_limit>(io, fixed_gradient2());
        for (int i = 0; i < coroutines; ++i) {
            asio::co_spawn(
                io,
                [limit]() -> asio::awaitable<void> {
                    auto ex = co_await asio::this_coro::executor;
                    for (int r = 0; r < rounds; ++r) {
                        auto p = co_await limit->acquire();
                        co_await asio::post(ex, asio::use_awaitable);
                        p.success();
                    }
                },
                asio::detached);
        }
    });
}
BENCHMARK(limit_contended)->Unit(benchmark::kMillisecond)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
