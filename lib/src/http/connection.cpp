// A connection's life and its framing: reading each request off the socket,
// refusing what cannot be read (400, 413, 431, 417), and closing. Serving a
// request is connection_serve.cpp; the server's events and the client's leaving
// are connection_events.cpp.
#include "connection.hpp"

#include "read_body.hpp"

#include <tame/http/json.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <limits>

#include <sys/socket.h>

namespace tame::http::detail {
namespace {

namespace beast = boost::beast;
using error_code = boost::system::error_code;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::int64_t no_deadline = std::numeric_limits<std::int64_t>::max();
constexpr std::size_t read_chunk = 8 * 1024;
// After an error answer, the client's unread bytes are drained for this long
// (and up to linger_bytes) before closing, so that closing with unread data does
// not reset the connection before the client has read the answer.
constexpr std::chrono::milliseconds linger_time{1000};
constexpr std::size_t linger_bytes = 1024 * 1024;
constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";

const boost::system::error_category& beast_http_category()
{
    static const auto& category =
        beast::http::make_error_code(beast::http::error::bad_method).category();
    return category;
}

} // namespace

connection::connection(std::shared_ptr<server_state> server, asio::ip::tcp::socket socket,
                       asio::any_io_executor executor, permit slot)
    : server_{std::move(server)}, socket_{std::move(socket)}, executor_{std::move(executor)},
      slot_{std::move(slot)}, deadline_{no_deadline}, lane_{executor_}
{
    error_code ec;
    peer_ = socket_.remote_endpoint(ec);
    socket_.set_option(asio::ip::tcp::no_delay{true}, ec);
}

connection::~connection()
{
    if (registered_) {
        server_->remove(registration_);
    }
}

void connection::register_with_server()
{
    // Not in the constructor: the sweeper and stop() take the connection's
    // weak_from_this(), which make_shared has only set once construction is over.
    registration_ = server_->add(this);
    registered_ = true;
}

void connection::arm(std::chrono::milliseconds timeout, clock::time_point now) noexcept
{
    deadline_.store(timeout.count() > 0 ? ticks(now + timeout) : no_deadline,
                    std::memory_order_relaxed);
}

void connection::disarm() noexcept
{
    deadline_.store(no_deadline, std::memory_order_relaxed);
}

asio::awaitable<void> connection::run()
{
    const auto& options = server_->options;
    // A new connection must deliver its first request's headers in time.
    arm(options.header_timeout, server_->now());

    for (;;) {
        if (buffer_.size() == 0) {
            if (draining_ || server_->stage() != server_stage::running) {
                break;
            }
            // Waiting for the next request is the idle phase; its first bytes
            // start the header timeout.
            phase_ = phase::waiting;
            auto [ec, n] = co_await socket_.async_read_some(buffer_.prepare(read_chunk), use_tuple);
            // A read can succeed after a shutdown closed the idle connection (its
            // completion was already queued): the request is then not taken, as
            // the client can no longer be answered.
            if (ec || phase_ == phase::closed) {
                break;
            }
            buffer_.commit(n);
        }

        phase_ = phase::reading;
        started_ = server_->now();
        arm(options.header_timeout, started_);
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
            options.header_limit, std::numeric_limits<std::uint32_t>::max())));
        parser_->body_limit(options.body_limit);

        // Most requests arrive whole in one read: parse what is buffered first,
        // and read only for what is missing.
        auto header_ec = put_buffered(*parser_, buffer_);
        if (!header_ec && !parser_->is_header_done()) {
            auto [ec, n] =
                co_await beast::http::async_read_header(socket_, buffer_, *parser_, use_tuple);
            if (phase_ == phase::closed) {
                break;
            }
            // The bytes read with the header's last ones are the body's first:
            // read_body() expects them put already.
            header_ec = ec ? ec : put_buffered(*parser_, buffer_);
        }
        if (header_ec) {
            co_await fail_request(header_ec);
            break;
        }
        if (auto refused = unsafe_framing(*parser_)) {
            co_await write_error(status::bad_request, std::string{"malformed request: "} + refused);
            break;
        }

        if (!parser_->is_done()) {
            const auto expect = parser_->get()[field::expect];
            if (!expect.empty()) {
                if (!beast::iequals(expect, "100-continue")) {
                    co_await write_error(status::expectation_failed,
                                         "unsupported Expect: " + std::string{expect});
                    break;
                }
                if (parser_->get().version() >= 11) {
                    arm(options.write_timeout, server_->now());
                    auto [ec, n] = co_await asio::async_write(
                        socket_, asio::buffer(continue_line.data(), continue_line.size()),
                        use_tuple);
                    if (ec) {
                        break;
                    }
                }
            }
            arm(options.body_timeout, server_->now());
            const auto body_ec =
                co_await read_body(socket_, buffer_, *parser_, options.header_limit, read_chunk);
            if (phase_ == phase::closed) {
                break;
            }
            if (body_ec) {
                co_await fail_request(body_ec);
                break;
            }
        }

        if (!co_await serve(parser_->release())) {
            break;
        }
    }

    close_socket();
}

const char*
connection::unsafe_framing(const beast::http::request_parser<beast::http::string_body>& parser)
{
    // Beast 1.81 reads no body when the last coding is not chunked, so the body
    // would be parsed as the next request on the connection (request
    // smuggling). RFC 9112 6.3: answer 400 and close. The attack scripts found it.
    const auto& head = parser.get();
    if (head.count(field::transfer_encoding) == 0) {
        return nullptr;
    }
    if (!parser.chunked()) {
        return "Transfer-Encoding must end in chunked";
    }
    // RFC 9112 6.1: in HTTP/1.0 the framing is faulty; the connection must not
    // be kept for another request, which Connection: keep-alive would do.
    if (head.version() < 11) {
        return "Transfer-Encoding in an HTTP/1.0 request";
    }
    return nullptr;
}

asio::awaitable<void> connection::fail_request(const error_code& ec)
{
    if (ec == beast::http::error::header_limit) {
        co_await write_error(status::request_header_fields_too_large,
                             "request header larger than " +
                                 std::to_string(server_->options.header_limit) + " bytes");
    } else if (ec == beast::http::error::body_limit) {
        co_await write_error(status::payload_too_large,
                             "request body larger than " +
                                 std::to_string(server_->options.body_limit) + " bytes");
    } else if (ec.category() == beast_http_category() && ec != beast::http::error::end_of_stream &&
               ec != beast::http::error::partial_message) {
        // A client that closed mid-request (or a timeout that closed it) gets no
        // answer; anything else Beast's parser rejects is malformed.
        co_await write_error(status::bad_request, "malformed request: " + ec.message());
    }
}

asio::awaitable<void> connection::write_error(status code, std::string_view message)
{
    auto res = error_response(code, message);
    const bool header_done = parser_ && parser_->is_header_done();
    const unsigned version = header_done ? parser_->get().version() : 11;
    finish(res, version, false);

    phase_ = phase::writing;
    arm(server_->options.write_timeout, server_->now());
    auto [ec, n] = co_await beast::http::async_write(socket_, res, use_tuple);
    const auto elapsed = server_->now() - started_;
    server_->metrics.record_request(server_->metrics.invalid_route(), res.result_int(), elapsed);
    log({peer_, header_done ? parser_->get().method_string() : "-",
         header_done ? parser_->get().target() : "-", version, res.result_int(), res.body().size(),
         elapsed});
    if (!ec) {
        co_await linger();
    }
}

asio::awaitable<void> connection::linger()
{
    phase_ = phase::lingering;
    error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    arm(linger_time, server_->now());
    std::array<char, 4096> scratch;
    for (std::size_t total = 0; total < linger_bytes;) {
        auto [ec, n] = co_await socket_.async_read_some(asio::buffer(scratch), use_tuple);
        if (ec) {
            break;
        }
        total += n;
    }
}

void connection::close_socket()
{
    phase_ = phase::closed;
    disarm();
    error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
}

} // namespace tame::http::detail
