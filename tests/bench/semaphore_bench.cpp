// tame's async_semaphore against the plain-Asio idiom for the same job: an
// experimental::channel<void(error_code)> used as a token bucket (Go's buffered
// channel semaphore: a send takes a token, a receive gives it back).
//
//   (a) uncontended acquire + release, co_await and try_ forms (and a mutex, for scale)
//   (b) 64 and 1000 coroutines sharing 10 permits, holding each across a co_await post,
//       on one thread
//   (c) the same on two threads (the channel is not thread-safe: its users share a strand)
//   (d) memory per waiting coroutine, 100k waiters
#include <tame/semaphore.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "bench_support.hpp"

#include <benchmark/benchmark.h>

#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using error_code = boost::system::error_code;
using token_channel = asio::experimental::channel<void(error_code)>;

namespace {

constexpr std::size_t permits = 10;

void ignore(error_code) {}

// ---- (a) uncontended -------------------------------------------------------
// The loops are written out in place: a helper coroutine would add a nested frame
// (~35 ns) to the tens of nanoseconds being measured.

void tame_co_await_acquire(benchmark::State& state)
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
BENCHMARK(tame_co_await_acquire);

void tame_co_await_async_acquire(benchmark::State& state)
{
    asio::io_context io{1};
    tame::async_semaphore sem{io, permits};
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            for (auto _ : state) {
                auto p = co_await sem.async_acquire(asio::use_awaitable);
                benchmark::DoNotOptimize(p);
            }
        },
        asio::detached);
    io.run();
}
BENCHMARK(tame_co_await_async_acquire);

void channel_co_await_send(benchmark::State& state)
{
    asio::io_context io{1};
    token_channel tokens{io, permits};
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            for (auto _ : state) {
                co_await tokens.async_send(error_code{}, asio::use_awaitable);
                tokens.try_receive(ignore);
            }
        },
        asio::detached);
    io.run();
}
BENCHMARK(channel_co_await_send);

void tame_try_acquire(benchmark::State& state)
{
    asio::io_context io{1};
    tame::async_semaphore sem{io, permits};
    for (auto _ : state) {
        auto p = sem.try_acquire();
        benchmark::DoNotOptimize(p);
    }
}
BENCHMARK(tame_try_acquire);

void channel_try_send(benchmark::State& state)
{
    asio::io_context io{1};
    token_channel tokens{io, permits};
    for (auto _ : state) {
        benchmark::DoNotOptimize(tokens.try_send(error_code{}));
        tokens.try_receive(ignore);
    }
}
BENCHMARK(channel_try_send);

void mutex_lock_unlock(benchmark::State& state)
{
    std::mutex mutex;
    for (auto _ : state) {
        mutex.lock();
        mutex.unlock();
    }
}
BENCHMARK(mutex_lock_unlock);

// ---- (b), (c) contended: coroutines hold a permit across one co_await post -----

asio::awaitable<void> tame_worker(tame::async_semaphore& sem, int rounds)
{
    auto ex = co_await asio::this_coro::executor;
    for (int i = 0; i < rounds; ++i) {
        auto p = co_await sem.acquire();
        co_await asio::post(ex, asio::use_awaitable);
    }
}

asio::awaitable<void> channel_worker(token_channel& tokens, int rounds)
{
    auto ex = co_await asio::this_coro::executor;
    for (int i = 0; i < rounds; ++i) {
        co_await tokens.async_send(error_code{}, asio::use_awaitable);
        co_await asio::post(ex, asio::use_awaitable);
        tokens.try_receive(ignore);
    }
}

// The same coroutines without any semaphore: the cost of the co_await post that
// both contenders pay, to subtract from their figures.
asio::awaitable<void> post_only_worker(int rounds)
{
    auto ex = co_await asio::this_coro::executor;
    for (int i = 0; i < rounds; ++i) {
        co_await asio::post(ex, asio::use_awaitable);
    }
}

void run_threads(asio::io_context& io, int threads)
{
    std::vector<std::thread> extra;
    for (int i = 1; i < threads; ++i) {
        extra.emplace_back([&io] { io.run(); });
    }
    io.run();
    for (auto& t : extra) {
        t.join();
    }
}

constexpr int acquisitions_per_run = 64'000;

/// Runs `coroutines` workers of `rounds` rounds on `threads` threads, once per
/// benchmark iteration. `spawn_all(io, coroutines, rounds)` starts the workers and
/// returns what they share, which lives until they have finished.
template <class SpawnAll>
void run_contended(benchmark::State& state, SpawnAll spawn_all)
{
    const int coroutines = static_cast<int>(state.range(0));
    const int threads = static_cast<int>(state.range(1));
    const int rounds = acquisitions_per_run / coroutines;
    for (auto _ : state) {
        asio::io_context io{threads};
        [[maybe_unused]] auto shared = spawn_all(io, coroutines, rounds);
        run_threads(io, threads);
    }
    const auto ops = static_cast<double>(coroutines) * rounds;
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * ops));
    state.counters["per_acquire"] = benchmark::Counter(
        ops, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void contended_args(benchmark::internal::Benchmark* b)
{
    b->ArgNames({"coroutines", "threads"});
    for (int threads : {1, 2}) {
        for (int coroutines : {64, 1000}) {
            b->Args({coroutines, threads});
        }
    }
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}

void tame_contended(benchmark::State& state)
{
    run_contended(state, [](asio::io_context& io, int coroutines, int rounds) {
        auto sem = std::make_unique<tame::async_semaphore>(io, permits);
        for (int i = 0; i < coroutines; ++i) {
            asio::co_spawn(io, tame_worker(*sem, rounds), asio::detached);
        }
        return sem;
    });
}
BENCHMARK(tame_contended)->Apply(contended_args);

void channel_contended(benchmark::State& state)
{
    run_contended(state, [](asio::io_context& io, int coroutines, int rounds) {
        // A channel is not thread-safe: on two threads its users share a strand.
        auto strand = asio::make_strand(io);
        auto tokens = std::make_unique<token_channel>(strand, permits);
        for (int i = 0; i < coroutines; ++i) {
            asio::co_spawn(strand, channel_worker(*tokens, rounds), asio::detached);
        }
        return tokens;
    });
}
BENCHMARK(channel_contended)->Apply(contended_args);

void post_only_baseline(benchmark::State& state)
{
    run_contended(state, [](asio::io_context& io, int coroutines, int rounds) {
        for (int i = 0; i < coroutines; ++i) {
            asio::co_spawn(io, post_only_worker(rounds), asio::detached);
        }
        return 0; // nothing shared
    });
}
BENCHMARK(post_only_baseline)->Apply(contended_args);

// ---- (d) memory per waiting coroutine ------------------------------------------

constexpr int waiters = 100'000;

template <class Spawn, class Drain>
void measure_waiters(benchmark::State& state, asio::io_context& io, Spawn spawn, Drain drain)
{
    const std::size_t before = tame_bench::heap_in_use();
    for (int i = 0; i < waiters; ++i) {
        spawn();
    }
    io.poll(); // every coroutine starts and waits
    const std::size_t after = tame_bench::heap_in_use();
    drain();
    io.run();
    state.counters["bytes_per_waiter"] =
        static_cast<double>(after - before) / static_cast<double>(waiters);
}

void tame_memory_per_waiter(benchmark::State& state)
{
    for (auto _ : state) {
        asio::io_context io{1};
        tame::async_semaphore sem{io, 1};
        auto held = sem.try_acquire();
        measure_waiters(
            state, io,
            [&] {
                asio::co_spawn(
                    io, [&]() -> asio::awaitable<void> { auto p = co_await sem.acquire(); },
                    asio::detached);
            },
            [&] { held.release(); });
    }
}
BENCHMARK(tame_memory_per_waiter)->Iterations(1)->Unit(benchmark::kMillisecond);

void channel_memory_per_waiter(benchmark::State& state)
{
    for (auto _ : state) {
        asio::io_context io{1};
        token_channel tokens{io, 1};
        (void)tokens.try_send(error_code{});
        measure_waiters(
            state, io,
            [&] {
                asio::co_spawn(
                    io,
                    [&]() -> asio::awaitable<void> {
                        co_await tokens.async_send(error_code{}, asio::use_awaitable);
                        tokens.try_receive(ignore);
                    },
                    asio::detached);
            },
            [&] { tokens.try_receive(ignore); });
    }
}
BENCHMARK(channel_memory_per_waiter)->Iterations(1)->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
