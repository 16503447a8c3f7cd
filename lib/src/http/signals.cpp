#include <tame/http/signals.hpp>

#include <tame/http/server.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>

#include <csignal>
#include <cstdio>

namespace tame::http {

struct shutdown_on_signals::state : std::enable_shared_from_this<state> {
    state(asio::io_context& context, server& s, std::chrono::steady_clock::duration drain,
          std::function<void(std::size_t)> stopped)
        // The signal wait and the shutdown's completion share a strand, so that
        // cancelling the wait never races re-arming it on a multi-threaded io.
        : io{context}, srv{s}, signals{asio::make_strand(context), SIGINT, SIGTERM},
          drain_timeout{drain}, on_stopped{std::move(stopped)}
    {
    }

    void wait()
    {
        signals.async_wait(
            [self = shared_from_this()](const boost::system::error_code& ec, int signal) {
                if (!ec) {
                    self->on_signal(signal);
                }
            });
    }

    void on_signal(int signal)
    {
        const char* name = signal == SIGINT ? "SIGINT" : "SIGTERM";
        if (++received == 1) {
            std::fprintf(stderr,
                         "tame::http: %s received; finishing requests in flight (signal again to "
                         "stop now)\n",
                         name);
            // Listen again before the shutdown starts: its completion cancels this
            // wait, and on several threads it could otherwise come first.
            wait();
            srv.async_shutdown(
                drain_timeout,
                asio::bind_executor(signals.get_executor(),
                                    [self = shared_from_this()](std::size_t cancelled) {
                                        if (self->on_stopped) {
                                            self->on_stopped(cancelled);
                                        }
                                        boost::system::error_code ignored;
                                        self->signals.cancel(ignored);
                                    }));
            return;
        }
        std::fprintf(stderr, "tame::http: %s received again; stopping now\n", name);
        srv.stop();
        io.stop();
    }

    asio::io_context& io;
    server& srv;
    asio::signal_set signals;
    std::chrono::steady_clock::duration drain_timeout;
    std::function<void(std::size_t)> on_stopped;
    int received = 0;
};

shutdown_on_signals::shutdown_on_signals(asio::io_context& io, server& srv,
                                         std::chrono::steady_clock::duration drain_timeout,
                                         std::function<void(std::size_t)> on_stopped)
    : state_{std::make_shared<state>(io, srv, drain_timeout, std::move(on_stopped))}
{
    state_->wait();
}

shutdown_on_signals::~shutdown_on_signals()
{
    asio::post(state_->signals.get_executor(), [s = state_] {
        boost::system::error_code ignored;
        s->signals.cancel(ignored);
    });
}

} // namespace tame::http
