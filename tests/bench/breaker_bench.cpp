// tame::breaker's hot path: allow() and a mark, per call, against what any
// counting of outcomes costs (one relaxed atomic increment), on one thread and
// on several sharing one breaker. With a closed breaker (the common case) and
// with an open one (each call drawing whether to drop).
#include <tame/breaker.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>

namespace {

void BM_breaker_allow_success_closed(benchmark::State& state)
{
    static tame::breaker b;
    for (auto _ : state) {
        auto guard = b.allow();
        benchmark::DoNotOptimize(static_cast<bool>(guard));
        guard.success();
    }
}
BENCHMARK(BM_breaker_allow_success_closed)->Threads(1)->Threads(2)->Threads(4);

void BM_breaker_allow_failure_open(benchmark::State& state)
{
    // Every call fails: the breaker opens and drops most of them.
    static tame::breaker b;
    for (auto _ : state) {
        auto guard = b.allow();
        benchmark::DoNotOptimize(static_cast<bool>(guard));
        guard.failure();
    }
}
BENCHMARK(BM_breaker_allow_failure_open)->Threads(1)->Threads(2)->Threads(4);

/// The floor of counting anything shared between threads.
void BM_baseline_atomic_increment(benchmark::State& state)
{
    static std::atomic<std::uint64_t> count{0};
    for (auto _ : state) {
        count.fetch_add(1, std::memory_order_relaxed);
    }
    benchmark::DoNotOptimize(count.load());
}
BENCHMARK(BM_baseline_atomic_increment)->Threads(1)->Threads(2)->Threads(4);

} // namespace

BENCHMARK_MAIN();
