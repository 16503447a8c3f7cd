// tame::distributed_semaphore against the floor it cannot beat: one script round
// trip (connection::async_eval) to the same redis-server, on the same connection.
// The server is a real redis-server on a free loopback port
// (tests/support/tame_test/redis_server.hpp), started once per process; it keeps
// an append-only file, so the semaphore's scripts (which write) pay for it and
// the floor's `return 1` does not. Every benchmark drives its io_context by hand,
// on one thread: an operation is "awaited" by running the io_context until its
// handler has run. server_us_* counters are the time Redis spent running scripts
// (INFO commandstats), to tell its share of a round trip from the client's; the
// CPU column is the client thread's.
//
//   (1) the floor: one async_eval of `return 1` per iteration (also given the
//       acquire script's 7 keys and 6 arguments; and two in a row, the floor of
//       an awaited acquire followed by an awaited release)
//   (2) acquire(1) + release, uncontended: both awaited; and acquire awaited with
//       a fire-and-forget release (permit.release(), pipelined ahead of the next
//       acquire's script)
//   (3) commands sent per grant (connection::stats().commands, both sockets),
//       uncontended in (2), contended in (4)
//   (4) grants per second: 1000 acquires queued across 4 connections (each with
//       a semaphore of the same name) sharing 10 permits, each permit released
//       as soon as granted; and the same on 1 connection
//   (5) client heap bytes per waiting acquire, 1000 waiters behind a held permit
//       (every operator new of the process is counted, below)
#include <tame/redis/connection.hpp>
#include <tame/redis/distributed_permit.hpp>
#include <tame/redis/distributed_semaphore.hpp>

#include <tame_test/redis_server.hpp>

#include <boost/asio/io_context.hpp>

#include "bench_support.hpp"

#include <benchmark/benchmark.h>

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

// ---- live heap bytes: every operator new of the process, counted ----------------
// By the allocator's usable size of each block, so that delete needs no header.
// Always on: it adds a few nanoseconds to each allocation, against round trips
// of tens of microseconds. hiredis allocates with malloc, which is not counted.

namespace {

std::atomic<std::int64_t> live_bytes{0};
std::atomic<std::int64_t> live_blocks{0};
std::atomic<std::int64_t> peak_live_bytes{0}; // the highest since it was last reset

void* counted(void* p)
{
    if (p == nullptr) {
        throw std::bad_alloc{};
    }
    const auto n = static_cast<std::int64_t>(::malloc_usable_size(p));
    live_blocks.fetch_add(1, std::memory_order_relaxed);
    const auto now = live_bytes.fetch_add(n, std::memory_order_relaxed) + n;
    auto peak = peak_live_bytes.load(std::memory_order_relaxed);
    while (now > peak &&
           !peak_live_bytes.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
    return p;
}

void* counted_new(std::size_t n)
{
    return counted(std::malloc(n == 0 ? 1 : n));
}

void* counted_new(std::size_t n, std::align_val_t align)
{
    void* p = nullptr;
    const auto a = std::max(static_cast<std::size_t>(align), sizeof(void*));
    if (::posix_memalign(&p, a, n == 0 ? 1 : n) != 0) {
        p = nullptr;
    }
    return counted(p);
}

void counted_delete(void* p) noexcept
{
    if (p != nullptr) {
        live_bytes.fetch_sub(static_cast<std::int64_t>(::malloc_usable_size(p)),
                             std::memory_order_relaxed);
        live_blocks.fetch_sub(1, std::memory_order_relaxed);
        std::free(p);
    }
}

} // namespace

// libstdc++'s nothrow forms call these.
void* operator new(std::size_t n)
{
    return counted_new(n);
}
void* operator new[](std::size_t n)
{
    return counted_new(n);
}
void* operator new(std::size_t n, std::align_val_t a)
{
    return counted_new(n, a);
}
void* operator new[](std::size_t n, std::align_val_t a)
{
    return counted_new(n, a);
}
void operator delete(void* p) noexcept
{
    counted_delete(p);
}
void operator delete[](void* p) noexcept
{
    counted_delete(p);
}
void operator delete(void* p, std::size_t) noexcept
{
    counted_delete(p);
}
void operator delete[](void* p, std::size_t) noexcept
{
    counted_delete(p);
}
void operator delete(void* p, std::align_val_t) noexcept
{
    counted_delete(p);
}
void operator delete[](void* p, std::align_val_t) noexcept
{
    counted_delete(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept
{
    counted_delete(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept
{
    counted_delete(p);
}

namespace {

namespace asio = boost::asio;
namespace redis = tame::redis;
using tame::distributed_permit;
using tame::distributed_semaphore;
using tame::distributed_semaphore_stats;
using tame::error_code;
using clock_type = std::chrono::steady_clock;

tame_test::redis_server& server()
{
    static tame_test::redis_server instance;
    return instance;
}

redis::connection_options options()
{
    redis::connection_options o;
    o.url = server().url();
    return o;
}

/// A semaphore name no earlier run of this process has used (the server lives
/// as long as the process, so its keys outlive each benchmark).
std::string fresh_name(const char* what)
{
    static int runs = 0;
    return std::string{"bench-"} + what + "-" + std::to_string(++runs);
}

/// Reports `what` (and `ec`) as the benchmark's error; SkipWithError keeps the
/// pointer, so the text lives here.
void skip(benchmark::State& state, const char* what, error_code ec = {})
{
    static std::string message;
    message = what;
    if (ec) {
        message += ": " + ec.message();
    }
    state.SkipWithError(message.c_str());
}

/// Runs `io` one handler at a time until `done()`.
template <class Done>
void run_until(asio::io_context& io, Done done)
{
    while (!done()) {
        if (io.run_one() == 0) {
            throw std::logic_error{"run_until: the io_context ran out of work"};
        }
    }
}

/// After the semaphores and connections are destroyed: their last handlers run.
void drain(asio::io_context& io)
{
    io.restart();
    io.run_for(std::chrono::seconds{2});
    if (!io.stopped()) {
        std::fprintf(stderr, "redis_bench: work left 2 s after every object was destroyed\n");
    }
}

std::uint64_t commands_of(const std::vector<std::unique_ptr<redis::connection>>& conns)
{
    std::uint64_t sum = 0;
    for (const auto& c : conns) {
        sum += c->stats().commands;
    }
    return sum;
}

error_code eval_once(asio::io_context& io, redis::connection& conn, const redis::script& lua,
                     const redis::command& keys = {}, const redis::command& args = {})
{
    std::optional<error_code> result;
    conn.async_eval(lua, keys, args, [&](error_code ec, redis::reply) { result = ec; });
    run_until(io, [&] { return result.has_value(); });
    return *result;
}

/// Microseconds Redis has spent running scripts so far: EVALSHA and EVAL in
/// INFO commandstats (the Lua and the commands it calls).
double script_usec(asio::io_context& io, redis::connection& conn)
{
    std::optional<error_code> result;
    std::string text;
    conn.async_exec({"INFO", "commandstats"}, [&](error_code ec, redis::reply r) {
        text = r.text();
        result = ec;
    });
    run_until(io, [&] { return result.has_value(); });
    if (*result) {
        throw std::runtime_error{"INFO commandstats: " + result->message()};
    }
    double usec = 0;
    for (const char* name : {"cmdstat_evalsha:", "cmdstat_eval:"}) {
        if (const auto at = text.find(name); at != std::string::npos) {
            // cmdstat_evalsha:calls=3,usec=120,usec_per_call=40.00,...
            if (const auto u = text.find("usec=", at); u != std::string::npos) {
                usec += std::strtod(text.c_str() + u + 5, nullptr);
            }
        }
    }
    return usec;
}

error_code acquire_once(asio::io_context& io, distributed_semaphore& sem, distributed_permit& out)
{
    std::optional<error_code> result;
    sem.async_acquire(1, [&](error_code ec, distributed_permit p) {
        out = std::move(p);
        result = ec;
    });
    run_until(io, [&] { return result.has_value(); });
    return *result;
}

error_code release_once(asio::io_context& io, distributed_permit& permit)
{
    std::optional<error_code> result;
    permit.async_release([&](error_code ec) { result = ec; });
    run_until(io, [&] { return result.has_value(); });
    return *result;
}

/// Also a barrier: its script is sent after everything issued before it
/// through `sem`, and answered after them.
error_code stats_once(asio::io_context& io, distributed_semaphore& sem,
                      distributed_semaphore_stats& out)
{
    std::optional<error_code> result;
    sem.async_stats([&](error_code ec, distributed_semaphore_stats s) {
        out = s;
        result = ec;
    });
    run_until(io, [&] { return result.has_value(); });
    return *result;
}

// ---- (1) the floor ---------------------------------------------------------------

const redis::script& return_one()
{
    static const redis::script lua{"return 1"};
    return lua;
}

void BM_floor_one_script_round_trip(benchmark::State& state)
{
    asio::io_context io{1};
    {
        redis::connection conn{io.get_executor(), options()};
        // Connects and caches the script (the first EVALSHA is answered NOSCRIPT).
        if (auto ec = eval_once(io, conn, return_one())) {
            skip(state, "warm-up eval", ec);
            return;
        }
        const double usec = script_usec(io, conn);
        for (auto _ : state) {
            if (auto ec = eval_once(io, conn, return_one())) {
                skip(state, "eval", ec);
                break;
            }
        }
        state.counters["server_us_per_iteration"] =
            benchmark::Counter(script_usec(io, conn) - usec, benchmark::Counter::kAvgIterations);
    }
    drain(io);
}
BENCHMARK(BM_floor_one_script_round_trip);

// The same round trip carrying what the acquire script is sent with: 7 keys of
// its shape and 6 arguments (the script reads none of them).
void BM_floor_one_script_round_trip_7_keys_6_args(benchmark::State& state)
{
    asio::io_context io{1};
    {
        redis::connection conn{io.get_executor(), options()};
        const std::string prefix = "tame:sem:{bench-floor}:";
        const redis::command keys{prefix + "holders", prefix + "owners", prefix + "queue",
                                  prefix + "beats",   prefix + "wants",  prefix + "meta",
                                  prefix + "granted"};
        const redis::command args{
            "0123456789abcdef-12345", "1", "10000", "1000000", "wait", "10000"};
        if (auto ec = eval_once(io, conn, return_one(), keys, args)) {
            skip(state, "warm-up eval", ec);
            return;
        }
        const double usec = script_usec(io, conn);
        for (auto _ : state) {
            if (auto ec = eval_once(io, conn, return_one(), keys, args)) {
                skip(state, "eval", ec);
                break;
            }
        }
        state.counters["server_us_per_iteration"] =
            benchmark::Counter(script_usec(io, conn) - usec, benchmark::Counter::kAvgIterations);
    }
    drain(io);
}
BENCHMARK(BM_floor_one_script_round_trip_7_keys_6_args);

// Two awaited round trips in a row: what an awaited acquire followed by an
// awaited release cannot go below.
void BM_floor_two_script_round_trips(benchmark::State& state)
{
    asio::io_context io{1};
    {
        redis::connection conn{io.get_executor(), options()};
        if (auto ec = eval_once(io, conn, return_one())) {
            skip(state, "warm-up eval", ec);
            return;
        }
        const double usec = script_usec(io, conn);
        for (auto _ : state) {
            error_code ec = eval_once(io, conn, return_one());
            if (!ec) {
                ec = eval_once(io, conn, return_one());
            }
            if (ec) {
                skip(state, "eval", ec);
                break;
            }
        }
        state.counters["server_us_per_iteration"] =
            benchmark::Counter(script_usec(io, conn) - usec, benchmark::Counter::kAvgIterations);
    }
    drain(io);
}
BENCHMARK(BM_floor_two_script_round_trips);

// ---- (2), (3) uncontended acquire + release -------------------------------------

constexpr std::size_t large_capacity = 1'000'000;

/// One acquire, awaited, then its release: awaited too, or not (permit.release()
/// sends its script at once, and the next acquire's script follows it on the
/// same socket).
void acquire_release_uncontended(benchmark::State& state, bool await_release)
{
    asio::io_context io{1};
    {
        redis::connection conn{io.get_executor(), options()};
        distributed_semaphore sem{
            conn, fresh_name(await_release ? "uncontended" : "fire-and-forget"), large_capacity};
        {
            // Connects and caches both scripts.
            distributed_permit permit;
            error_code ec = acquire_once(io, sem, permit);
            if (!ec) {
                ec = release_once(io, permit);
            }
            if (ec) {
                skip(state, "warm-up", ec);
                return;
            }
        }
        const double usec = script_usec(io, conn);
        const auto before = conn.stats().commands;
        for (auto _ : state) {
            distributed_permit permit;
            if (auto ec = acquire_once(io, sem, permit)) {
                skip(state, "acquire", ec);
                break;
            }
            if (!await_release) {
                permit.release();
            } else if (auto ec = release_once(io, permit)) {
                skip(state, "release", ec);
                break;
            }
        }
        std::uint64_t extra_commands = 0;
        if (!await_release) {
            // The last release is answered before this stats script (not counted
            // as a command; its few microseconds of script time are, once).
            distributed_semaphore_stats s;
            if (auto ec = stats_once(io, sem, s)) {
                skip(state, "stats", ec);
            } else if (s.used != 0) {
                state.SkipWithError("permits still held after the releases");
            }
            extra_commands = 1;
        }
        state.counters["commands_per_grant"] =
            benchmark::Counter(static_cast<double>(conn.stats().commands - before - extra_commands),
                               benchmark::Counter::kAvgIterations);
        state.counters["server_us_per_grant"] =
            benchmark::Counter(script_usec(io, conn) - usec, benchmark::Counter::kAvgIterations);
    }
    drain(io);
}

void BM_distributed_acquire_release_uncontended(benchmark::State& state)
{
    acquire_release_uncontended(state, true);
}
BENCHMARK(BM_distributed_acquire_release_uncontended);

void BM_distributed_acquire_awaited_release_fire_and_forget(benchmark::State& state)
{
    acquire_release_uncontended(state, false);
}
BENCHMARK(BM_distributed_acquire_awaited_release_fire_and_forget);

// ---- (3), (4) contended: 1000 acquires, 10 permits --------------------------------

constexpr int contended_acquires = 1000;
constexpr std::size_t contended_capacity = 10;

void grants_per_second(benchmark::State& state, std::size_t connections)
{
    asio::io_context io{1};
    {
        const std::string name = fresh_name("contended");
        std::vector<std::unique_ptr<redis::connection>> conns;
        std::vector<std::unique_ptr<distributed_semaphore>> sems;
        for (std::size_t i = 0; i < connections; ++i) {
            conns.push_back(std::make_unique<redis::connection>(io.get_executor(), options()));
            sems.push_back(
                std::make_unique<distributed_semaphore>(*conns.back(), name, contended_capacity));
        }
        // Queues every acquire at once, round robin over the semaphores; each
        // permit goes back as soon as it is granted. Returns once all are granted.
        auto one_round = [&]() -> error_code {
            int granted = 0;
            error_code failed;
            for (int i = 0; i < contended_acquires; ++i) {
                sems[static_cast<std::size_t>(i) % connections]->async_acquire(
                    1, [&](error_code ec, distributed_permit) {
                        // The permit is destroyed here: released, held 0 ms.
                        if (ec && !failed) {
                            failed = ec;
                        }
                        ++granted;
                    });
            }
            run_until(io, [&] { return granted == contended_acquires; });
            return failed;
        };
        // Waits until every release has been answered (a stats script through
        // each semaphore), then checks, with one more, that the semaphore is
        // empty again; false (and skips) if not. Sends connections + 1 scripts.
        auto settle = [&] {
            distributed_semaphore_stats s;
            for (auto& sem : sems) {
                if (auto ec = stats_once(io, *sem, s)) {
                    skip(state, "stats", ec);
                    return false;
                }
            }
            if (auto ec = stats_once(io, *sems.front(), s)) {
                skip(state, "stats", ec);
                return false;
            }
            if (s.used != 0 || s.waiting != 0) {
                skip(state, "permits held or acquires waiting after a round");
                return false;
            }
            return true;
        };
        // Connects both sockets of each connection, caches the scripts and
        // subscribes each semaphore to the grant channel.
        if (auto ec = one_round()) {
            skip(state, "warm-up round", ec);
            return;
        }
        if (!settle()) {
            return;
        }
        double seconds = 0;
        std::uint64_t commands = 0;
        double usec = 0;
        for (auto _ : state) {
            const double usec_before = script_usec(io, *conns.front());
            const auto before = commands_of(conns);
            const auto start = clock_type::now();
            const error_code ec = one_round();
            const std::chrono::duration<double> elapsed = clock_type::now() - start;
            state.SetIterationTime(elapsed.count());
            seconds += elapsed.count();
            if (ec) {
                skip(state, "acquire", ec);
                break;
            }
            if (!settle()) {
                break;
            }
            // Less the stats scripts of settle() (their server time is counted:
            // a few microseconds a round).
            commands += commands_of(conns) - before - (connections + 1);
            usec += script_usec(io, *conns.front()) - usec_before;
        }
        const auto grants = static_cast<double>(state.iterations()) * contended_acquires;
        state.counters["grants_per_second"] = grants / seconds;
        state.counters["commands_per_grant"] = static_cast<double>(commands) / grants;
        state.counters["server_us_per_grant"] = usec / grants;
    }
    drain(io);
}

void BM_grants_per_second_1000_waiters_4_connections(benchmark::State& state)
{
    grants_per_second(state, 4);
}
BENCHMARK(BM_grants_per_second_1000_waiters_4_connections)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void BM_grants_per_second_1000_waiters_1_connection(benchmark::State& state)
{
    grants_per_second(state, 1);
}
BENCHMARK(BM_grants_per_second_1000_waiters_1_connection)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// ---- (5) client memory per waiting acquire ---------------------------------------

constexpr int memory_waiters = 1000;

void BM_client_memory_per_waiter(benchmark::State& state)
{
    for (auto _ : state) {
        asio::io_context io{1};
        {
            redis::connection conn{io.get_executor(), options()};
            distributed_semaphore sem{conn, fresh_name("memory"), 1};
            struct round_bytes {
                std::int64_t counted_at_start = 0; // nothing held, nobody waiting
                double counted = 0;                // added by the waiters, all waiting
                double blocks = 0;
                double peak = 0; // the most added on the way there
                double glibc = 0;
            };
            // Queues `memory_waiters` acquires behind a held permit and measures
            // what they add once all wait; then lets them through, each releasing
            // at once, and waits until every release is answered. False (and
            // skips) on a failure.
            auto one_round = [&](round_bytes& bytes) {
                bytes.counted_at_start = live_bytes.load(std::memory_order_relaxed);
                distributed_permit held;
                if (auto ec = acquire_once(io, sem, held)) {
                    skip(state, "acquire", ec);
                    return false;
                }
                const auto counted_before = live_bytes.load(std::memory_order_relaxed);
                const auto blocks_before = live_blocks.load(std::memory_order_relaxed);
                peak_live_bytes.store(counted_before, std::memory_order_relaxed);
                const auto glibc_before = tame_bench::heap_in_use();
                int granted = 0;
                error_code failed;
                for (int i = 0; i < memory_waiters; ++i) {
                    sem.async_acquire(1, [&](error_code ec, distributed_permit) {
                        if (ec && !failed) {
                            failed = ec;
                        }
                        ++granted;
                    });
                }
                // Every acquire has been told to wait once this is answered.
                distributed_semaphore_stats s;
                if (auto ec = stats_once(io, sem, s)) {
                    skip(state, "stats", ec);
                    return false;
                }
                if (s.waiting != static_cast<std::size_t>(memory_waiters)) {
                    skip(state, "not every acquire waits");
                    return false;
                }
                bytes.counted = static_cast<double>(live_bytes.load(std::memory_order_relaxed) -
                                                    counted_before);
                bytes.blocks = static_cast<double>(live_blocks.load(std::memory_order_relaxed) -
                                                   blocks_before);
                bytes.peak = static_cast<double>(peak_live_bytes.load(std::memory_order_relaxed) -
                                                 counted_before);
                bytes.glibc = static_cast<double>(tame_bench::heap_in_use()) -
                              static_cast<double>(glibc_before);
                held.release();
                run_until(io, [&] { return granted == memory_waiters; });
                if (failed) {
                    skip(state, "acquire", failed);
                    return false;
                }
                if (auto ec = stats_once(io, sem, s)) {
                    skip(state, "stats", ec);
                    return false;
                }
                return true;
            };
            // The first round also subscribes, and grows the connection's
            // buffers to 1000 pipelined scripts; the second finds them in place.
            round_bytes first;
            round_bytes second;
            if (!one_round(first) || !one_round(second)) {
                break;
            }
            state.counters["bytes_per_waiter"] = second.counted / memory_waiters;
            state.counters["allocations_per_waiter"] = second.blocks / memory_waiters;
            state.counters["glibc_heap_bytes_per_waiter"] = second.glibc / memory_waiters;
            state.counters["bytes_per_waiter_first_round"] = first.counted / memory_waiters;
            // While the 1000 first looks are in flight.
            state.counters["peak_bytes_per_waiter"] = second.peak / memory_waiters;
            // Kept once the first round is over: the subscription, and buffers
            // grown to the burst.
            state.counters["bytes_kept_after_first_round"] =
                static_cast<double>(second.counted_at_start - first.counted_at_start);
        }
        drain(io);
    }
}
BENCHMARK(BM_client_memory_per_waiter)->Iterations(1)->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
