// cancel_source and task_group against the plain-Asio ways of doing the same job:
//
//   source.bind(token)     vs  bind_cancellation_slot(signal.slot(), token), around a
//                              semaphore acquire that completes at once;
//   emit() to N waiters    vs  N hand-kept cancellation_signals emitted in a loop
//                              (the per-operation cost of a fan-out cancel);
//   task_group of N tasks  vs  co_spawn of N coroutines that count themselves down,
//                              with no limit, and with a limit of 10 (a tame permit held by
//                              each hand-spawned coroutine, as code without task_group does),
//                              on the io_context and on strands.
#include <tame/cancel_source.hpp>
#include <tame/semaphore.hpp>
#include <tame/task_group.hpp>
#include <tame/wait_group.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "bench_support.hpp"

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

// ---- bind around one operation --------------------------------------------------

void source_bind_acquire(benchmark::State& state)
{
    asio::io_context io{1};
    tame::async_semaphore sem{io, 1};
    tame::cancel_source source;
    std::size_t granted = 0;
    for (auto _ : state) {
        sem.async_acquire(source.bind([&](tame::error_code, tame::permit) { ++granted; }));
        io.restart();
        io.poll();
    }
    benchmark::DoNotOptimize(granted);
}
BENCHMARK(source_bind_acquire);

void signal_slot_acquire(benchmark::State& state)
{
    asio::io_context io{1};
    tame::async_semaphore sem{io, 1};
    std::size_t granted = 0;
    for (auto _ : state) {
        asio::cancellation_signal signal;
        sem.async_acquire(asio::bind_cancellation_slot(
            signal.slot(), [&](tame::error_code, tame::permit) { ++granted; }));
        io.restart();
        io.poll();
    }
    benchmark::DoNotOptimize(granted);
}
BENCHMARK(signal_slot_acquire);

// ---- fan-out: cancel N waiting timers -------------------------------------------

void source_emit_fan_out(benchmark::State& state)
{
    const auto waiters = static_cast<std::size_t>(state.range(0));
    asio::io_context io{1};
    std::vector<std::unique_ptr<asio::steady_timer>> timers;
    for (std::size_t i = 0; i < waiters; ++i) {
        timers.push_back(std::make_unique<asio::steady_timer>(io));
    }
    std::size_t cancelled = 0;
    for (auto _ : state) {
        tame::cancel_source source;
        for (auto& timer : timers) {
            timer->expires_after(1h);
            timer->async_wait(source.bind([&](tame::error_code) { ++cancelled; }));
        }
        source.emit();
        io.restart();
        io.run();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * waiters));
    benchmark::DoNotOptimize(cancelled);
}
BENCHMARK(source_emit_fan_out)->Arg(1000);

void signals_fan_out(benchmark::State& state)
{
    const auto waiters = static_cast<std::size_t>(state.range(0));
    asio::io_context io{1};
    std::vector<std::unique_ptr<asio::steady_timer>> timers;
    for (std::size_t i = 0; i < waiters; ++i) {
        timers.push_back(std::make_unique<asio::steady_timer>(io));
    }
    std::size_t cancelled = 0;
    for (auto _ : state) {
        std::vector<asio::cancellation_signal> signals(waiters);
        for (std::size_t i = 0; i < waiters; ++i) {
            timers[i]->expires_after(1h);
            timers[i]->async_wait(asio::bind_cancellation_slot(
                signals[i].slot(), [&](tame::error_code) { ++cancelled; }));
        }
        for (auto& signal : signals) {
            signal.emit(asio::cancellation_type::terminal);
        }
        io.restart();
        io.run();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * waiters));
    benchmark::DoNotOptimize(cancelled);
}
BENCHMARK(signals_fan_out)->Arg(1000);

// ---- N tasks, then join ----------------------------------------------------------

constexpr int tasks_per_batch = 1000;

asio::awaitable<void> short_task(int& done)
{
    co_await asio::post(asio::use_awaitable); // one suspension, as a task with I/O has
    ++done;
}

void task_group_batch(benchmark::State& state)
{
    const auto limit = static_cast<std::size_t>(state.range(0));
    asio::io_context io{1};
    int done = 0;
    tame_bench::loop_in_coroutine(state, io, [&]() -> asio::awaitable<void> {
        tame::task_group group{co_await asio::this_coro::executor, limit};
        for (int i = 0; i < tasks_per_batch; ++i) {
            co_await group.async_spawn([&] { return short_task(done); }, asio::use_awaitable);
        }
        co_await group.async_join(asio::use_awaitable);
    });
    state.SetItemsProcessed(state.iterations() * tasks_per_batch);
    benchmark::DoNotOptimize(done);
}
BENCHMARK(task_group_batch)->Arg(0)->Arg(10);

// The same batch with the coroutine-native spawn(), which does not suspend the
// spawner while a slot is free.
void task_group_spawn_batch(benchmark::State& state)
{
    const auto limit = static_cast<std::size_t>(state.range(0));
    asio::io_context io{1};
    int done = 0;
    tame_bench::loop_in_coroutine(state, io, [&]() -> asio::awaitable<void> {
        tame::task_group group{co_await asio::this_coro::executor, limit};
        for (int i = 0; i < tasks_per_batch; ++i) {
            co_await group.spawn([&] { return short_task(done); });
        }
        co_await group.async_join(asio::use_awaitable);
    });
    state.SetItemsProcessed(state.iterations() * tasks_per_batch);
    benchmark::DoNotOptimize(done);
}
BENCHMARK(task_group_spawn_batch)->Arg(0)->Arg(10);

// What code without task_group writes: co_spawn each task on the executor that
// `task_executor(i)` names, count it down in a wait_group, and (with a limit)
// hold a semaphore permit while it runs.
template <class TaskExecutor>
void hand_spawned(benchmark::State& state, asio::io_context& io, TaskExecutor task_executor)
{
    const auto limit = static_cast<std::size_t>(state.range(0));
    int done = 0;
    tame_bench::loop_in_coroutine(state, io, [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        tame::async_semaphore slots{ex, limit == 0 ? tame::async_semaphore::max_capacity : limit};
        tame::wait_group running{ex};
        for (int i = 0; i < tasks_per_batch; ++i) {
            tame::permit slot = co_await slots.acquire();
            running.add();
            asio::co_spawn(
                task_executor(i),
                [&, slot = std::move(slot)]() mutable -> asio::awaitable<void> {
                    co_await short_task(done);
                    slot.release();
                    running.done();
                },
                asio::detached);
        }
        co_await running.async_wait(asio::use_awaitable);
    });
    state.SetItemsProcessed(state.iterations() * tasks_per_batch);
    benchmark::DoNotOptimize(done);
}

void hand_spawned_batch(benchmark::State& state)
{
    asio::io_context io{1};
    hand_spawned(state, io, [&](int) { return io.get_executor(); });
}
BENCHMARK(hand_spawned_batch)->Arg(0)->Arg(10);

// The same on 8 strands made up front, as task_group does: what it takes for
// the tasks to be cancellable on an io_context run by several threads.
void hand_spawned_strand_batch(benchmark::State& state)
{
    asio::io_context io{1};
    std::vector<asio::strand<asio::io_context::executor_type>> strands;
    for (int i = 0; i < 8; ++i) {
        strands.push_back(asio::make_strand(io));
    }
    hand_spawned(state, io,
                 [&](int i) { return strands[static_cast<std::size_t>(i) % strands.size()]; });
}
BENCHMARK(hand_spawned_strand_batch)->Arg(0)->Arg(10);

} // namespace

BENCHMARK_MAIN();
