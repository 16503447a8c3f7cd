// Uses the installed package: a coroutine takes a permit, and a callback waits.
#include <tame/tame.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdio>

namespace asio = boost::asio;

int main()
{
    asio::io_context io;
    tame::async_semaphore sem{io, 2};
    tame::wait_group group{io};
    int finished = 0;

    group.add(1);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto p = co_await sem.acquire(2);
            finished += static_cast<int>(p.count());
            group.done();
        },
        asio::detached);
    group.async_wait([&](tame::error_code ec) { finished += ec ? 0 : 1; });
    io.run();

    std::printf("consumer: %s\n", finished == 3 ? "ok" : "failed");
    return finished == 3 && sem.available() == 2 ? 0 : 1;
}
