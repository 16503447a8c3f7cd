#pragma once

#include <tame/http/metrics.hpp>
#include <tame/http/router.hpp>
#include <tame/http/server_options.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <utility>

namespace tame::http {

namespace detail {
class server_state;
}

/// An HTTP/1.1 server on Beast that runs `router`'s handlers as coroutines.
///
/// Each connection is a coroutine on a strand of its own, so the io_context may be
/// run by any number of threads. Requests on one connection are answered in order
/// (keep-alive, pipelining, HTTP/1.0 and 1.1, `Expect: 100-continue`). What a
/// request may cost is bounded by server_options: header and body sizes (431,
/// 413), malformed requests (400, then close), read, idle and write timeouts,
/// connections open at once (accept waits), requests in flight (503 +
/// Retry-After) and, optionally, each handler's run time (503).
///
/// A handler's awaits are cancelled when its client disconnects, its deadline
/// passes, or a shutdown's drain period ends (see request_context). A handler
/// that throws http_error answers with its status; any other exception is logged
/// and answered 500. The server carries on in every case.
///
/// Destroying the server stops it as stop() does; it must happen before the
/// io_context is destroyed.
class server {
  public:
    /// A server for `routes` with `options`, not yet listening. Its connections
    /// and timers run on `io`.
    server(asio::io_context& io, router routes, server_options options = {});

    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    /// Binds, listens and starts accepting. Throws boost::system::system_error
    /// naming the address when it cannot listen (say, the port is taken).
    void start();

    /// The address and port the server listens on (after start()).
    asio::ip::tcp::endpoint local_endpoint() const;

    /// The server's metrics; add application series here.
    metrics_registry& metrics() noexcept;

    /// Whether a shutdown or stop has begun.
    bool is_stopping() const noexcept;

    /// Shuts down gracefully: stops accepting (new connections are refused), closes
    /// idle connections, lets requests in flight finish for up to `drain_timeout`
    /// (their connections then close), then cancels the handlers still running and
    /// waits for them. The drain period is measured by server_options::time. It is
    /// the same drain-then-cancel sequence as task_pool::async_shutdown().
    ///
    /// Completion signature: `void(std::size_t cancelled)`, the number of requests
    /// whose handlers had to be cancelled.
    ///
    /// **Cancellation**, terminal or partial, ends the drain period at once, as if
    /// it had expired; the shutdown still waits for the cancelled handlers. Total
    /// cancellation is ignored (cancelling handlers is a side effect).
    ///
    /// The handler runs on its associated executor (by default the io_context's),
    /// never inside this call. Calling it again, or after stop(), joins the
    /// shutdown under way.
    template <class Token>
    auto async_shutdown(std::chrono::steady_clock::duration drain_timeout, Token&& token)
    {
        return asio::async_initiate<Token, void(std::size_t)>(
            [this](auto handler, std::chrono::steady_clock::duration drain) {
                start_shutdown(drain,
                               asio::any_completion_handler<void(std::size_t)>{std::move(handler)});
            },
            token, drain_timeout);
    }

    /// Stops at once: stops accepting, cancels every handler and closes every
    /// connection. Does not wait; async_shutdown(0s, …) also waits.
    void stop();

  private:
    void start_shutdown(std::chrono::steady_clock::duration drain,
                        asio::any_completion_handler<void(std::size_t)> handler);

    std::shared_ptr<detail::server_state> state_;
};

} // namespace tame::http
