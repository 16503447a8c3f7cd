#pragma once

#include <tame/adaptive_shedder.hpp>
#include <tame/time_source.hpp>

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace tame::http {

/// One answered request, as the access log sees it.
struct access_entry {
    /// The client's address and port.
    boost::asio::ip::tcp::endpoint peer;
    /// The request method ("GET"), or "-" when the request could not be read.
    std::string_view method;
    /// The request target as sent ("/jobs/7?x=1"), or "-".
    std::string_view target;
    /// 10 for HTTP/1.0, 11 for HTTP/1.1.
    unsigned version = 11;
    /// The status sent; 499 when the client went away before its answer.
    unsigned status = 0;
    /// The response body's size in bytes.
    std::size_t bytes = 0;
    /// From the request's first byte to its response's handing to the socket.
    std::chrono::nanoseconds duration{};
};

/// Writes `entry` as one line on stderr:
/// `127.0.0.1:50432 "GET /hello HTTP/1.1" 200 13 0.041ms`.
void log_to_stderr(const access_entry& entry);

/// The server's address, limits and timeouts. Every limit answers with a clear
/// status, and no timeout costs a timer operation per read or write: a sweep of
/// all connections, every tenth of the shortest timeout, closes the late ones.
struct server_options {
    /// The address to listen on; loopback unless told otherwise.
    std::string address = "127.0.0.1";
    /// The port to listen on; 0 picks a free one (see server::local_endpoint()).
    std::uint16_t port = 8080;

    /// Largest request body: a larger one is answered 413 and the connection closed.
    std::size_t body_limit = 1024 * 1024;
    /// Largest request line plus headers: larger is answered 431 and closed.
    std::size_t header_limit = 8 * 1024;

    /// From a request's first byte (or a new connection) to the end of its headers;
    /// a slower client is disconnected (slowloris).
    std::chrono::milliseconds header_timeout = std::chrono::seconds{10};
    /// How long a kept-alive connection may wait for its next request.
    std::chrono::milliseconds idle_timeout = std::chrono::seconds{60};
    /// From the end of the headers to the end of the body.
    std::chrono::milliseconds body_timeout = std::chrono::seconds{30};
    /// How long writing a response may take (a client that does not read).
    std::chrono::milliseconds write_timeout = std::chrono::seconds{30};
    /// How long a handler may run before it is cancelled and the request answered
    /// 503; zero means no limit.
    std::chrono::milliseconds request_timeout{0};

    /// Connections open at once; more wait in the listen backlog (a tame semaphore
    /// gates accept).
    std::size_t max_connections = 10000;
    /// Requests in their handlers at once, over all connections; more are answered
    /// 503 with Retry-After at once, rather than queued without bound.
    std::size_t max_in_flight = 1000;
    /// The Retry-After a shed request is given.
    std::chrono::seconds retry_after{1};
    /// Adaptive load shedding (go-zero's; see tame::adaptive_shedder): when the
    /// CPU is over `cpu_threshold` and more requests are in flight than the
    /// server has shown it carries, requests are answered 503 with Retry-After
    /// before their handler runs. Off (empty) by default. Its clock, unless
    /// given, is `time`'s.
    std::optional<shedder_options> shedding;

    /// A promise that one thread runs the io_context: connections then need no
    /// strands (as task_pool_options::single_threaded). With several threads,
    /// handlers would race.
    bool single_threaded = false;

    /// Where every timeout above and the shutdown's drain period are measured and
    /// waited for: the steady clock, unless a test gives a tame::manual_time
    /// (null: the steady clock). Access-log durations and request latencies are
    /// read from it too.
    std::shared_ptr<time_source> time = steady_time();

    /// Serve `/healthz` and `/metrics` unless the router has its own.
    bool builtin_routes = true;
    /// Called once per answered request; empty for no access log.
    std::function<void(const access_entry&)> access_log = log_to_stderr;
};

} // namespace tame::http
