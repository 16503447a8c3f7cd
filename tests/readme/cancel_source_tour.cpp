// One signal stops many operations: a shutdown source reaches every worker's wait, from
// any thread, and a request's child source can be cancelled alone.
#include <tame/cancel_source.hpp>

#include <boost/asio.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

namespace asio = boost::asio;
using namespace std::chrono_literals;

asio::awaitable<void> poll_queue(tame::cancel_source& shutdown, int id)
{
    asio::steady_timer next_poll{co_await asio::this_coro::executor};
    for (int polls = 0;; ++polls) {
        next_poll.expires_after(10ms);
        auto [ec] =
            co_await next_poll.async_wait(shutdown.bind(asio::as_tuple(asio::use_awaitable)));
        if (ec) {
            std::printf("worker %d stopped after %d polls\n", id, polls);
            co_return;
        }
    }
}

asio::awaitable<void> handle_request(tame::cancel_source& shutdown)
{
    // Cancelled when the server shuts down, or alone when this client goes away.
    tame::cancel_source request = shutdown.make_child();
    asio::steady_timer upstream_call{co_await asio::this_coro::executor, 1h};
    asio::steady_timer client_hangs_up{co_await asio::this_coro::executor, 5ms};
    client_hangs_up.async_wait([request](auto) mutable { request.emit(); });

    auto [ec] =
        co_await upstream_call.async_wait(request.bind(asio::as_tuple(asio::use_awaitable)));
    std::printf("request: %s; server shutting down: %s\n", ec.message().c_str(),
                shutdown.cancelled() ? "yes" : "no");
}

int main()
{
    asio::io_context io;
    tame::cancel_source shutdown;
    for (int id = 0; id < 3; ++id) {
        asio::co_spawn(io, poll_queue(shutdown, id), asio::detached);
    }
    asio::co_spawn(io, handle_request(shutdown), asio::detached);

    // Say, a signal-handling thread: emit() is safe from any thread, and each
    // operation is cancelled on its own executor.
    std::thread signal_thread{[&] {
        std::this_thread::sleep_for(35ms);
        std::printf("shutting down\n");
        shutdown.emit();
    }};
    io.run(); // returns once every worker has stopped
    signal_thread.join();
    return shutdown.bound() == 0 ? 0 : 1;
}
