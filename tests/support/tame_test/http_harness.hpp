#pragma once

// Real-socket fixtures for tame::http tests: a server on 127.0.0.1 with an
// ephemeral port, run by background threads, and a raw client whose every wait is
// bounded, so that a broken server fails a test instead of hanging it.

#include <tame/http/server.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include <chrono>
#include <cstdint>
#include <future>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace tame_test {

namespace http = tame::http;
using tcp = boost::asio::ip::tcp;

/// Server options for tests: an ephemeral port and no access log.
inline http::server_options test_options()
{
    http::server_options options;
    options.port = 0;
    options.access_log = {};
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
/// never send. Each read waits at most `limit`.
class raw_client {
  public:
    explicit raw_client(std::uint16_t port)
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
            io_.run_one_for(std::chrono::milliseconds{50});
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

    boost::asio::io_context io_;
    tcp::socket socket_{io_};
    boost::beast::flat_buffer buffer_;
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
