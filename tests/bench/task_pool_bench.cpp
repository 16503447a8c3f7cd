// task_pool against plain Asio doing the same job, in one binary:
//
//   (a) async_submit of a trivial plain callable  vs  asio::post of it to the
//       same io_context (and to a strand, where the pool runs it);
//   (b) async_submit of a trivial coroutine task   vs  co_spawn of it (detached,
//       on the io_context, on strands, and on strands with a cancellation slot);
//   (c) co_await async_run of a task returning int  vs  co_await co_spawn of it;
//   (d) 1M short tasks (one suspension each) through a pool of capacity 100,
//       submitted by one coroutine that waits for a slot when the pool is full
//       vs  co_spawn of each, holding a tame permit (the code without a pool).
//       Counters: time per task, and the process's peak resident memory (run
//       each of the two alone, with --benchmark_filter, for that to mean anything).
//
// Batches of 1000 submissions per iteration, with the pool's capacity at 1000
// for (a) and (b) so that admission never waits: what it costs when it is free.
#include <tame/semaphore.hpp>
#include <tame/task_pool.hpp>
#include <tame/wait_group.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "bench_support.hpp"

#include <benchmark/benchmark.h>

#include <sys/resource.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace asio = boost::asio;

namespace {

constexpr int batch = 1000;

tame::task_pool_options free_admission()
{
    tame::task_pool_options options;
    options.capacity = batch;
    return options;
}

asio::awaitable<void> trivial_task()
{
    co_return;
}

/// Per iteration: `submit(i)` for a batch, then the io_context until all is done.
template <class Submit>
void in_batches(benchmark::State& state, asio::io_context& io, Submit submit)
{
    for (auto _ : state) {
        for (int i = 0; i < batch; ++i) {
            submit(i);
        }
        io.restart();
        io.run();
    }
    state.SetItemsProcessed(state.iterations() * batch);
}

/// Four strands of `io`, as the pool has on this machine.
std::vector<asio::any_io_executor> four_strands(asio::io_context& io)
{
    std::vector<asio::any_io_executor> strands;
    for (int i = 0; i < 4; ++i) {
        strands.emplace_back(asio::make_strand(io));
    }
    return strands;
}

// ---- (a) plain callables ---------------------------------------------------------

void post_plain(benchmark::State& state)
{
    asio::io_context io{1};
    int done = 0;
    in_batches(state, io, [&](int) { asio::post(io, [&] { ++done; }); });
    benchmark::DoNotOptimize(done);
}
BENCHMARK(post_plain);

void post_plain_to_strands(benchmark::State& state)
{
    asio::io_context io{1};
    const auto strands = four_strands(io);
    int done = 0;
    in_batches(state, io, [&](int i) {
        asio::post(strands[static_cast<std::size_t>(i) % strands.size()], [&] { ++done; });
    });
    benchmark::DoNotOptimize(done);
}
BENCHMARK(post_plain_to_strands);

void pool_submit_plain(benchmark::State& state)
{
    asio::io_context io{1};
    tame::task_pool pool{io, free_admission()};
    int done = 0;
    int submitted = 0;
    in_batches(state, io, [&](int) {
        pool.async_submit([&] { ++done; }, [&](tame::error_code) { ++submitted; });
    });
    benchmark::DoNotOptimize(done);
    benchmark::DoNotOptimize(submitted);
}
BENCHMARK(pool_submit_plain);

void pool_try_submit_plain(benchmark::State& state)
{
    asio::io_context io{1};
    tame::task_pool pool{io, free_admission()};
    int done = 0;
    in_batches(state, io, [&](int) { benchmark::DoNotOptimize(pool.try_submit([&] { ++done; })); });
    benchmark::DoNotOptimize(done);
}
BENCHMARK(pool_try_submit_plain);

// ---- (b) coroutine tasks ---------------------------------------------------------

void co_spawn_trivial(benchmark::State& state)
{
    asio::io_context io{1};
    in_batches(state, io, [&](int) { asio::co_spawn(io, trivial_task, asio::detached); });
}
BENCHMARK(co_spawn_trivial);

void co_spawn_trivial_on_strands(benchmark::State& state)
{
    asio::io_context io{1};
    const auto strands = four_strands(io);
    in_batches(state, io, [&](int i) {
        asio::co_spawn(strands[static_cast<std::size_t>(i) % strands.size()], trivial_task,
                       asio::detached);
    });
}
BENCHMARK(co_spawn_trivial_on_strands);

// What every pool task carries beyond that: a cancellation slot, which co_spawn
// turns into two more allocations and a cancellation state for the coroutine.
void co_spawn_trivial_on_strands_cancellable(benchmark::State& state)
{
    asio::io_context io{1};
    const auto strands = four_strands(io);
    std::vector<asio::cancellation_signal> signals(batch);
    in_batches(state, io, [&](int i) {
        asio::co_spawn(strands[static_cast<std::size_t>(i) % strands.size()], trivial_task,
                       asio::bind_cancellation_slot(signals[static_cast<std::size_t>(i)].slot(),
                                                    asio::detached));
    });
}
BENCHMARK(co_spawn_trivial_on_strands_cancellable);

void pool_submit_trivial(benchmark::State& state)
{
    asio::io_context io{1};
    tame::task_pool pool{io, free_admission()};
    int submitted = 0;
    in_batches(state, io, [&](int) {
        pool.async_submit(trivial_task, [&](tame::error_code) { ++submitted; });
    });
    benchmark::DoNotOptimize(submitted);
}
BENCHMARK(pool_submit_trivial);

void pool_submit_trivial_single_threaded(benchmark::State& state)
{
    asio::io_context io{1};
    tame::task_pool_options options = free_admission();
    options.single_threaded = true;
    tame::task_pool pool{io, options};
    int submitted = 0;
    in_batches(state, io, [&](int) {
        pool.async_submit(trivial_task, [&](tame::error_code) { ++submitted; });
    });
    benchmark::DoNotOptimize(submitted);
}
BENCHMARK(pool_submit_trivial_single_threaded);

void co_spawn_trivial_cancellable(benchmark::State& state)
{
    asio::io_context io{1};
    std::vector<asio::cancellation_signal> signals(batch);
    in_batches(state, io, [&](int i) {
        asio::co_spawn(io, trivial_task,
                       asio::bind_cancellation_slot(signals[static_cast<std::size_t>(i)].slot(),
                                                    asio::detached));
    });
}
BENCHMARK(co_spawn_trivial_cancellable);

// ---- (c) round trips -------------------------------------------------------------

asio::awaitable<int> answer()
{
    co_return 42;
}

void co_spawn_round_trip(benchmark::State& state)
{
    asio::io_context io{1};
    int sum = 0;
    tame_bench::loop_in_coroutine(state, io, [&]() -> asio::awaitable<void> {
        sum += co_await asio::co_spawn(co_await asio::this_coro::executor, answer,
                                       asio::use_awaitable);
    });
    benchmark::DoNotOptimize(sum);
}
BENCHMARK(co_spawn_round_trip);

void pool_run_round_trip(benchmark::State& state)
{
    asio::io_context io{1};
    tame::task_pool pool{io};
    int sum = 0;
    tame_bench::loop_in_coroutine(state, io, [&]() -> asio::awaitable<void> {
        sum += co_await pool.async_run(answer, asio::use_awaitable);
    });
    benchmark::DoNotOptimize(sum);
}
BENCHMARK(pool_run_round_trip);

void pool_run_plain_round_trip(benchmark::State& state)
{
    asio::io_context io{1};
    tame::task_pool pool{io};
    int sum = 0;
    tame_bench::loop_in_coroutine(state, io, [&]() -> asio::awaitable<void> {
        sum += co_await pool.async_run([] { return 42; }, asio::use_awaitable);
    });
    benchmark::DoNotOptimize(sum);
}
BENCHMARK(pool_run_plain_round_trip);

// ---- (d) a million short tasks through capacity 100 ------------------------------

constexpr int million = 1'000'000;
constexpr std::size_t saturated_capacity = 100;

/// A short task: one suspension, as a task with I/O has.
asio::awaitable<void> short_task()
{
    co_await asio::post(asio::use_awaitable);
}

void report_million(benchmark::State& state)
{
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    state.counters["max_rss_mib"] = static_cast<double>(usage.ru_maxrss) / 1024.0;
    state.SetItemsProcessed(state.iterations() * million);
}

void pool_million_tasks(benchmark::State& state)
{
    for (auto _ : state) {
        asio::io_context io{1};
        tame::task_pool_options options;
        options.capacity = saturated_capacity;
        tame::task_pool pool{io, options};
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                for (int i = 0; i < million; ++i) {
                    co_await pool.async_submit(short_task, asio::use_awaitable);
                }
                co_await pool.async_drain(asio::use_awaitable);
            },
            asio::detached);
        io.run();
    }
    report_million(state);
}
BENCHMARK(pool_million_tasks)->Iterations(1)->Unit(benchmark::kMillisecond);

/// The code without a pool: a permit per task, co_spawn on `task_executor(i)`,
/// with `slot_of(i)` as its cancellation slot.
template <class TaskExecutor, class SlotOf>
void hand_million(benchmark::State& state, asio::io_context& io, TaskExecutor task_executor,
                  SlotOf slot_of)
{
    for (auto _ : state) {
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                auto ex = co_await asio::this_coro::executor;
                tame::async_semaphore slots{ex, saturated_capacity};
                tame::wait_group running{ex};
                for (int i = 0; i < million; ++i) {
                    tame::permit slot = co_await slots.acquire();
                    running.add();
                    asio::co_spawn(
                        task_executor(i),
                        [&, slot = std::move(slot)]() mutable -> asio::awaitable<void> {
                            co_await short_task();
                            slot.release();
                            running.done();
                        },
                        asio::bind_cancellation_slot(slot_of(i), asio::detached));
                }
                co_await running.async_wait(asio::use_awaitable);
            },
            asio::detached);
        io.run();
    }
    report_million(state);
}

void permit_million_tasks(benchmark::State& state)
{
    asio::io_context io{1};
    hand_million(
        state, io, [&](int) { return io.get_executor(); },
        [](int) { return asio::cancellation_slot{}; });
}
BENCHMARK(permit_million_tasks)->Iterations(1)->Unit(benchmark::kMillisecond);

// The same with what each pool task has: a strand (of 4) and a cancellation slot.
// The million signals are made up front (its max_rss counts them: ~190 MiB).
void permit_million_tasks_on_strands_cancellable(benchmark::State& state)
{
    asio::io_context io{1};
    const auto strands = four_strands(io);
    std::vector<asio::cancellation_signal> signals(million);
    hand_million(
        state, io, [&](int i) { return strands[static_cast<std::size_t>(i) % strands.size()]; },
        [&](int i) { return signals[static_cast<std::size_t>(i)].slot(); });
}
BENCHMARK(permit_million_tasks_on_strands_cancellable)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
