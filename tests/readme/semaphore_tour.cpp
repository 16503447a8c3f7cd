// At most 3 of 12 "uploads" at once; a big job takes 2 permits and is not starved.
#include <tame/semaphore.hpp>
#include <tame/wait_group.hpp>

#include <boost/asio.hpp>

#include <chrono>
#include <cstdio>

namespace asio = boost::asio;
using namespace std::chrono_literals;

asio::awaitable<void> upload(tame::async_semaphore& limit, tame::wait_group& group, int id)
{
    const std::size_t weight = id == 5 ? 2 : 1; // job 5 is twice as heavy
    {
        // Suspends only when no permit is free; waiters are served first come, first served.
        tame::permit permit = co_await limit.acquire(weight);
        asio::steady_timer io_call{co_await asio::this_coro::executor, 10ms};
        co_await io_call.async_wait(asio::use_awaitable);
        std::printf("upload %d done (%zu permit%s)\n", id, permit.count(), weight > 1 ? "s" : "");
    } // the permit goes back here and wakes the next waiter
    group.done();
}

int main()
{
    asio::io_context io;
    tame::async_semaphore limit{io, 3};
    tame::wait_group group{io};

    group.add(12);
    for (int id = 0; id < 12; ++id) {
        asio::co_spawn(io, upload(limit, group, id), asio::detached);
    }

    // Any completion token works: a callback here. This acquire gives up when its
    // cancellation signal fires, and then holds nothing. It runs once every upload
    // has started: three hold the permits, the rest wait in line.
    asio::cancellation_signal give_up;
    asio::post(io, [&] {
        std::printf("try_acquire: %s\n", limit.try_acquire() ? "got one" : "none free");
        limit.async_acquire(
            asio::bind_cancellation_slot(give_up.slot(), [](tame::error_code ec, tame::permit p) {
                std::printf("impatient acquire: %s, holds %zu\n", ec.message().c_str(), p.count());
            }));
        give_up.emit(asio::cancellation_type::terminal);
    });

    group.async_wait([&](tame::error_code) {
        const tame::semaphore_stats s = limit.stats();
        std::printf("all done: %llu acquired, %llu waited, at most %zu waiting\n",
                    static_cast<unsigned long long>(s.acquired),
                    static_cast<unsigned long long>(s.waited), s.max_waiting);
    });
    io.run();
    return limit.available() == limit.capacity() ? 0 : 1;
}
