// tame's deadlines against the plain-Asio ways of doing the same job:
//
//   with_timeout(op, d)  vs  Asio's experimental awaitable_operators (op || timer.async_wait)
//                             on an operation that completes at once, and on one that times out;
//   cancel_after(d, tok) vs  a hand-written cancellation_signal + steady_timer around the same
//                             operation (a semaphore acquire that completes at once);
//   memory: 100k coroutines waiting in with_timeout at once.
#include <tame/deadline.hpp>
#include <tame/semaphore.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "bench_support.hpp"

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;

namespace {

asio::awaitable<int> completes_at_once()
{
    co_return 42;
}

asio::awaitable<int> never_completes()
{
    asio::steady_timer timer{co_await asio::this_coro::executor, 24h};
    co_await timer.async_wait(asio::use_awaitable);
    co_return 0;
}

/// Awaits `body()` once per benchmark iteration on a fresh one-thread io_context.
template <class Body>
void in_coroutine(benchmark::State& state, Body body)
{
    asio::io_context io{1};
    tame_bench::loop_in_coroutine(state, io, body);
}

// ---- with_timeout vs || ---------------------------------------------------------

void with_timeout_completes(benchmark::State& state)
{
    in_coroutine(state, []() -> asio::awaitable<void> {
        benchmark::DoNotOptimize(co_await tame::with_timeout(completes_at_once(), 1h));
    });
}
BENCHMARK(with_timeout_completes);

void or_operator_completes(benchmark::State& state)
{
    in_coroutine(state, []() -> asio::awaitable<void> {
        asio::steady_timer timer{co_await asio::this_coro::executor, 1h};
        benchmark::DoNotOptimize(
            co_await (completes_at_once() || timer.async_wait(asio::use_awaitable)));
    });
}
BENCHMARK(or_operator_completes);

void with_timeout_times_out(benchmark::State& state)
{
    in_coroutine(state, []() -> asio::awaitable<void> {
        try {
            co_await tame::with_timeout(never_completes(), 1us);
        } catch (const boost::system::system_error&) {
        }
    });
}
BENCHMARK(with_timeout_times_out);

void or_operator_times_out(benchmark::State& state)
{
    in_coroutine(state, []() -> asio::awaitable<void> {
        asio::steady_timer timer{co_await asio::this_coro::executor, 1us};
        benchmark::DoNotOptimize(
            co_await (never_completes() || timer.async_wait(asio::use_awaitable)));
    });
}
BENCHMARK(or_operator_times_out);

// ---- cancel_after vs a hand-written signal + timer --------------------------------

void cancel_after_acquire(benchmark::State& state)
{
    asio::io_context io{1};
    tame::async_semaphore sem{io, 1};
    tame_bench::loop_in_coroutine(state, io, [&]() -> asio::awaitable<void> {
        auto p = co_await sem.async_acquire(tame::cancel_after(1h, asio::use_awaitable));
        benchmark::DoNotOptimize(p);
    });
}
BENCHMARK(cancel_after_acquire);

void hand_written_timeout_acquire(benchmark::State& state)
{
    asio::io_context io{1};
    tame::async_semaphore sem{io, 1};
    tame_bench::loop_in_coroutine(state, io, [&]() -> asio::awaitable<void> {
        asio::cancellation_signal signal;
        asio::steady_timer timer{io, 1h};
        timer.async_wait([&signal](boost::system::error_code ec) {
            if (!ec) {
                signal.emit(asio::cancellation_type::terminal);
            }
        });
        auto p = co_await sem.async_acquire(
            asio::bind_cancellation_slot(signal.slot(), asio::use_awaitable));
        timer.cancel();
        benchmark::DoNotOptimize(p);
    });
}
BENCHMARK(hand_written_timeout_acquire);

void plain_acquire(benchmark::State& state)
{
    asio::io_context io{1};
    tame::async_semaphore sem{io, 1};
    tame_bench::loop_in_coroutine(state, io, [&]() -> asio::awaitable<void> {
        auto p = co_await sem.async_acquire(asio::use_awaitable);
        benchmark::DoNotOptimize(p);
    });
}
BENCHMARK(plain_acquire);

// ---- memory: 100k waits at once ----------------------------------------------------

template <class Waiter>
void memory_per_wait(benchmark::State& state, Waiter waiter)
{
    constexpr int waits = 100'000;
    for (auto _ : state) {
        asio::io_context io{1};
        const std::size_t before = tame_bench::heap_in_use();
        for (int i = 0; i < waits; ++i) {
            asio::co_spawn(io, waiter(), asio::detached);
        }
        io.poll(); // every coroutine is now waiting
        const std::size_t after = tame_bench::heap_in_use();
        state.counters["bytes_per_wait"] =
            static_cast<double>(after - before) / static_cast<double>(waits);
        io.stop(); // the io_context destroys the waiting coroutines
    }
}

void with_timeout_memory(benchmark::State& state)
{
    memory_per_wait(state, []() -> asio::awaitable<void> {
        co_await tame::with_timeout(never_completes(), 1h);
    });
}
BENCHMARK(with_timeout_memory)->Iterations(1)->Unit(benchmark::kMillisecond);

void or_operator_memory(benchmark::State& state)
{
    memory_per_wait(state, []() -> asio::awaitable<void> {
        asio::steady_timer timer{co_await asio::this_coro::executor, 1h};
        co_await (never_completes() || timer.async_wait(asio::use_awaitable));
    });
}
BENCHMARK(or_operator_memory)->Iterations(1)->Unit(benchmark::kMillisecond);

void bare_wait_memory(benchmark::State& state)
{
    memory_per_wait(state, []() -> asio::awaitable<void> { co_await never_completes(); });
}
BENCHMARK(bare_wait_memory)->Iterations(1)->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
