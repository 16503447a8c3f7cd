#pragma once

// Real-socket fixtures for tame::http tests: a server on 127.0.0.1 with an
// ephemeral port, run by background threads (test_server) or stepped by the test
// on a manual clock (stepped_server), and a raw client whose every wait is
// bounded, so that a broken server fails a test instead of hanging it.

#include <tame/http/server.hpp>
#include <tame/manual_time.hpp>
#include <tame/time_source.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/socket.h>

namespace tame_test {

namespace http = tame::http;
using tcp = boost::asio::ip::tcp;

/// Server options for tests: an ephemeral port, no access log, and `time` for
/// every timeout and drain period (the steady clock unless a test gives a
/// tame::manual_time).
inline http::server_options
test_options(std::shared_ptr<tame::time_source> time = tame::steady_time())
{
    http::server_options options;
    options.port = 0;
    options.access_log = {};
    options.time = std::move(time);
    return options;
}

/// A started server, its io_context run by `threads` threads until the
/// destructor, which shuts it down (without a drain period) and joins them.
class test_server {
  public:
    explicit test_server(http::router routes, http::server_options options = test_options(),
                         int threads = 1)
        : server_{io_, std::move(routes), std::move(options)}
    {
        server_.start();
        for (int i = 0; i < threads; ++i) {
            threads_.emplace_back([this] { io_.run(); });
        }
    }

    ~test_server()
    {
        auto done = server_.async_shutdown(std::chrono::seconds{0}, boost::asio::use_future);
        if (done.wait_for(std::chrono::seconds{20}) != std::future_status::ready) {
            io_.stop();
        }
        keep_running_.reset();
        for (auto& t : threads_) {
            t.join();
        }
    }

    /// Shuts down with a drain period; returns the number of cancelled handlers,
    /// or nothing if the shutdown took longer than `limit`.
    std::optional<std::size_t> shutdown(std::chrono::steady_clock::duration drain,
                                        std::chrono::seconds limit = std::chrono::seconds{20})
    {
        auto done = server_.async_shutdown(drain, boost::asio::use_future);
        if (done.wait_for(limit) != std::future_status::ready) {
            return std::nullopt;
        }
        return done.get();
    }

    http::server& server() noexcept { return server_; }
    boost::asio::io_context& io() noexcept { return io_; }
    std::uint16_t port() const { return server_.local_endpoint().port(); }
    std::string url(std::string_view path) const
    {
        return "http://127.0.0.1:" + std::to_string(port()) + std::string{path};
    }

  private:
    boost::asio::io_context io_;
    // Without it, the threads' run() returns once a test's own shutdown has
    // completed, and the destructor's shutdown would wait 20 s for nothing.
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> keep_running_{
        io_.get_executor()};
    http::server server_;
    std::vector<std::thread> threads_;
};

/// A client connection that speaks raw bytes, for requests a polite client would
/// never send. Each read waits at most `limit`; while it waits, it calls
/// `while_waiting` (a stepped_server's poll()) between two looks at its socket.
class raw_client {
  public:
    explicit raw_client(std::uint16_t port, std::function<void()> while_waiting = {})
        : while_waiting_{std::move(while_waiting)}
    {
        socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
    }

    void send(std::string_view bytes) { boost::asio::write(socket_, boost::asio::buffer(bytes)); }

    /// The next response, or nothing if the connection failed or `limit` passed.
    std::optional<http::response>
    read_response(bool head = false, std::chrono::seconds limit = std::chrono::seconds{10})
    {
        boost::beast::http::response_parser<boost::beast::http::string_body> parser;
        parser.skip(head);
        parser.body_limit(64 * 1024 * 1024);
        std::optional<boost::system::error_code> result;
        boost::beast::http::async_read(
            socket_, buffer_, parser,
            [&](boost::system::error_code ec, std::size_t) { result = ec; });
        if (!run_until([&] { return result.has_value(); }, limit) || *result) {
            return std::nullopt;
        }
        return parser.release();
    }

    /// Whether the server closes the connection (end of stream or reset) within
    /// `limit`; bytes received before that are discarded.
    bool closed_by_server(std::chrono::seconds limit = std::chrono::seconds{10})
    {
        bool closed = false;
        char scratch[4096];
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (!closed && std::chrono::steady_clock::now() < deadline) {
            std::optional<boost::system::error_code> result;
            socket_.async_read_some(
                boost::asio::buffer(scratch),
                [&](boost::system::error_code ec, std::size_t) { result = ec; });
            if (!run_until([&] { return result.has_value(); },
                           std::chrono::duration_cast<std::chrono::seconds>(
                               deadline - std::chrono::steady_clock::now()) +
                               std::chrono::seconds{1})) {
                return false;
            }
            closed = result->failed();
        }
        return closed;
    }

    /// Whether the connection is open and nothing has arrived on it: no byte,
    /// no end of stream, no reset. Never waits: for "not yet".
    bool nothing_arrived()
    {
        if (buffer_.size() > 0) {
            return false;
        }
        char byte = 0;
        const auto n = ::recv(socket_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }

    void shutdown_send() { socket_.shutdown(tcp::socket::shutdown_send); }
    void close() { socket_.close(); }
    tcp::socket& socket() noexcept { return socket_; }

  private:
    template <class Done>
    bool run_until(Done done, std::chrono::steady_clock::duration limit)
    {
        io_.restart();
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done() && std::chrono::steady_clock::now() < deadline) {
            if (while_waiting_) {
                // The server runs only when this thread runs it: look often.
                while_waiting_();
                io_.run_one_for(std::chrono::milliseconds{1});
            } else {
                io_.run_one_for(std::chrono::milliseconds{50});
            }
            io_.restart();
        }
        if (!done()) {
            socket_.cancel();
            io_.restart();
            io_.run();
            return false;
        }
        return true;
    }

    std::function<void()> while_waiting_;
    boost::asio::io_context io_;
    tcp::socket socket_{io_};
    boost::beast::flat_buffer buffer_;
};

/// A started server on a tame::manual_time, whose io_context only the test
/// runs (poll(), advance(), run_until(), and its clients' waits): between two
/// steps of the test nothing happens in it, and nothing time-driven (a timeout,
/// the end of a drain period, the sweep that starts a client-gone watch) until
/// the test advances the clock. A test can then say "not yet" and "now".
///
/// `options.time` is replaced by `time`. The destructor shuts the server down
/// without a drain period, running it until that has completed.
class stepped_server {
  public:
    explicit stepped_server(
        http::router routes, http::server_options options = test_options(),
        std::shared_ptr<tame::manual_time> time = std::make_shared<tame::manual_time>())
        : time_{std::move(time)}, server_{io_, std::move(routes), on_time(std::move(options))}
    {
        server_.start();
        poll();
    }

    ~stepped_server()
    {
        bool done = false;
        server_.async_shutdown(std::chrono::seconds{0}, [&done](std::size_t) { done = true; });
        run_until([&] { return done; }, std::chrono::seconds{20});
        poll(); // the sweeper, stopped by the shutdown, ends
    }

    stepped_server(const stepped_server&) = delete;
    stepped_server& operator=(const stepped_server&) = delete;

    /// Runs the handlers that are ready, and those they make ready, until none is.
    void poll()
    {
        io_.restart();
        io_.poll();
    }

    /// Moves the clock on by `by`, then poll()s: whatever that time brings (a
    /// timeout, the end of a drain period, a sweep) has happened on return.
    void advance(std::chrono::steady_clock::duration by)
    {
        time_->advance(by);
        poll();
    }

    /// Runs the server until `done()` holds, waiting for its sockets in
    /// between: for what must come from a client or the kernel, not from time.
    /// False if `limit` passed first.
    bool run_until(const std::function<bool()>& done,
                   std::chrono::steady_clock::duration limit = std::chrono::seconds{10})
    {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            poll();
            if (done()) {
                return true;
            }
            if (std::chrono::steady_clock::now() > deadline) {
                return false;
            }
            io_.run_one_for(std::chrono::milliseconds{1});
        }
    }

    /// Starts the server's graceful shutdown with a drain period of `drain`,
    /// and poll()s: the drain period runs from the clock's time now.
    void begin_shutdown(std::chrono::steady_clock::duration drain)
    {
        server_.async_shutdown(drain, [this](std::size_t n) { cancelled_ = n; });
        poll();
    }

    /// Once the shutdown begun by begin_shutdown() has completed: the number of
    /// handlers it cancelled.
    const std::optional<std::size_t>& shutdown_result() const noexcept { return cancelled_; }

    /// A new connection to the server, whose waits run the server meanwhile.
    raw_client connect()
    {
        return raw_client{port(), [this] { poll(); }};
    }

    tame::manual_time& time() noexcept { return *time_; }
    http::server& server() noexcept { return server_; }
    boost::asio::io_context& io() noexcept { return io_; }
    std::uint16_t port() const { return server_.local_endpoint().port(); }

  private:
    http::server_options on_time(http::server_options options) const
    {
        options.time = time_;
        return options;
    }

    // Outlives the io_context, whose end may release the server's state: the
    // clock's own end then never runs inside the io_context's.
    std::shared_ptr<tame::manual_time> time_;
    boost::asio::io_context io_;
    http::server server_;
    std::optional<std::size_t> cancelled_;
};

/// A request as bytes: `method target HTTP/1.1`, Host, the extra header lines
/// (each ending in \r\n), and the body with its Content-Length.
inline std::string request_text(std::string_view method, std::string_view target,
                                std::string_view headers = {}, std::string_view body = {})
{
    std::string text{method};
    text += ' ';
    text += target;
    text += " HTTP/1.1\r\nHost: test\r\n";
    text += headers;
    if (!body.empty()) {
        text += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    text += "\r\n";
    text += body;
    return text;
}

} // namespace tame_test
