#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <benchmark/benchmark.h>

#include <malloc.h>

#include <cstddef>

namespace tame_bench {

/// Bytes the heap hands out now (glibc), to measure memory per waiter.
inline std::size_t heap_in_use()
{
    const auto info = ::mallinfo2();
    return info.uordblks + info.hblkhd;
}

/// Awaits `body()` once per benchmark iteration, inside one coroutine on `io`.
/// Each call adds a nested coroutine frame (~35 ns), the same for every
/// contender; loops measuring tens of nanoseconds are written out in place.
template <class Body>
void loop_in_coroutine(benchmark::State& state, boost::asio::io_context& io, Body body)
{
    boost::asio::co_spawn(
        io,
        [&]() -> boost::asio::awaitable<void> {
            for (auto _ : state) {
                co_await body();
            }
        },
        boost::asio::detached);
    io.run();
}

} // namespace tame_bench
