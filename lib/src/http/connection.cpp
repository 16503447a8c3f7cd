#include "connection.hpp"
#include "request_target.hpp"

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
        auto header_ec = parse_buffered();
        if (!header_ec && !parser_->is_header_done()) {
            auto [ec, n] =
                co_await beast::http::async_read_header(socket_, buffer_, *parser_, use_tuple);
            if (phase_ == phase::closed) {
                break;
            }
            header_ec = ec;
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
            auto [body_ec, body_bytes] =
                co_await beast::http::async_read(socket_, buffer_, *parser_, use_tuple);
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

error_code connection::parse_buffered()
{
    while (buffer_.size() > 0 && !parser_->is_done()) {
        error_code ec;
        const auto used = parser_->put(buffer_.data(), ec);
        buffer_.consume(used);
        if (ec == beast::http::error::need_more) {
            return {};
        }
        if (ec || used == 0) {
            return ec;
        }
    }
    return {};
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

asio::awaitable<bool> connection::serve(http::request req)
{
    auto& server = *server_;
    const auto& options = server.options;
    const unsigned version = req.version();
    const bool head = req.method() == verb::head;
    bool keep_alive = req.keep_alive();
    ++request_count_;

    response res;
    std::size_t route = server.metrics.invalid_route();
    std::optional<request_context> ctx;
    bool send = true;

    const auto routed = routing_path(req.target());
    if (!routed) {
        res = error_response(status::bad_request, "malformed request target");
    } else {
        const auto path = *routed;
        auto match = server.routes.match(req.method(), path);
        route = server.metrics.unmatched_route();
        switch (match.result) {
        case route_match::outcome::not_found:
            res = error_response(status::not_found, "no route for " +
                                                        std::string{req.method_string()} + " " +
                                                        std::string{path});
            break;
        case route_match::outcome::method_not_allowed:
            res = error_response(status::method_not_allowed,
                                 "method " + std::string{req.method_string()} +
                                     " not allowed for " + std::string{path});
            res.set(field::allow, match.allow);
            break;
        case route_match::outcome::found:
            route = match.index;
            // The built-in routes stay reachable under overload: a health check
            // that is shed would take a busy server out of rotation.
            if (route < server.first_builtin_route && !server.try_enter_handler()) {
                server.metrics.record_shed();
                res = error_response(status::service_unavailable,
                                     "too many requests in flight; retry later");
                res.set(field::retry_after, std::to_string(options.retry_after.count()));
                break;
            }
            ctx.emplace(std::move(req), std::move(match.params), peer_, executor_,
                        server.routes.label(route));
            phase_ = phase::handling;
            if (options.request_timeout.count() > 0) {
                arm(options.request_timeout, server_->now());
            } else {
                disarm();
            }
            auto [ep, handler_res] = co_await run_handler(route, *ctx);
            if (route < server.first_builtin_route) {
                server.leave_handler();
            }
            if (ep) {
                res = answer_exception(ep, *ctx, route);
                send = ctx->cancel_reason() != cancel_reason::client_gone;
            } else {
                res = std::move(handler_res);
            }
            break;
        }
    }
    const http::request& msg = ctx ? ctx->request() : req;

    keep_alive =
        keep_alive && !draining_ && !client_gone_ && server.stage() == server_stage::running;
    finish(res, version, keep_alive);
    const std::size_t bytes = head ? 0 : res.body().size();

    unsigned code = 499; // nginx's "client closed request"
    bool written = false;
    if (send && phase_ != phase::closed) {
        code = res.result_int();
        phase_ = phase::writing;
        arm(options.write_timeout, server_->now());
        // A HEAD answer is the GET answer's header alone, its framing included.
        beast::http::response_serializer<beast::http::string_body> serializer{res};
        auto [ec, n] =
            head ? co_await beast::http::async_write_header(socket_, serializer, use_tuple)
                 : co_await beast::http::async_write(socket_, serializer, use_tuple);
        written = !ec;
    }
    const auto done = server_->now();
    server.metrics.record_request(route, code, done - started_);
    log({peer_, msg.method_string(), msg.target(), version, code, bytes, done - started_});

    if (!written || !res.keep_alive()) {
        // Requests the client pipelined behind this one are left unread; drain
        // them before closing, or the close would reset the connection and could
        // destroy the answer just sent.
        if (written && buffer_.size() > 0) {
            co_await linger();
        }
        co_return false;
    }
    phase_ = phase::waiting;
    arm(options.idle_timeout, done);
    co_return true;
}

void connection::finish(response& res, unsigned version, bool keep_alive)
{
    // A handler may close its connection with `Connection: close`.
    if (beast::iequals(res[field::connection], "close")) {
        keep_alive = false;
    }
    res.version(version);
    res.keep_alive(keep_alive);
    // 1xx, 204 and 304 answers carry no body; Beast refuses to frame one.
    const auto code = res.result_int();
    if (code < 200 || code == 204 || code == 304) {
        res.body().clear();
    }
    if (!res.has_content_length() && !res.chunked()) {
        res.prepare_payload();
    }
}

asio::awaitable<std::tuple<std::exception_ptr, response>>
connection::run_handler(std::size_t route, request_context& ctx)
{
    // The handler runs in this coroutine, so cancelling it is emitting into this
    // coroutine's slot. Watching for the client leaving costs two operations, so
    // it is left to the sweeper, which starts it for handlers it finds running:
    // quick handlers never pay for it.
    context_ = &ctx;
    handler_done_ = false;
    running_request_.store(request_count_, std::memory_order_relaxed);

    std::exception_ptr ep;
    response res;
    try {
        res = co_await server_->routes.handler_at(route)(ctx);
    } catch (...) {
        ep = std::current_exception();
    }

    handler_done_ = true;
    context_ = nullptr;
    running_request_.store(0, std::memory_order_relaxed);
    stop_watching();
    if (ctx.is_cancelled()) {
        // The emission left this coroutine cancelled; the answer still has to go.
        co_await asio::this_coro::reset_cancellation_state();
    }
    co_return std::tuple{ep, std::move(res)};
}

response connection::answer_exception(std::exception_ptr ep, request_context& ctx,
                                      std::size_t route)
{
    std::string what;
    try {
        std::rethrow_exception(ep);
    } catch (const http_error& e) {
        return error_response(e.status(), e.what());
    } catch (const boost::system::system_error& e) {
        if (ctx.is_cancelled() && e.code() == asio::error::operation_aborted) {
            return error_response(status::service_unavailable,
                                  ctx.cancel_reason() == cancel_reason::deadline
                                      ? "request deadline exceeded"
                                      : "server is shutting down");
        }
        what = e.what();
    } catch (const std::exception& e) {
        what = e.what();
    } catch (...) {
        what = "an exception not derived from std::exception";
    }
    std::fprintf(stderr, "tame::http: the handler of %s threw: %s\n",
                 server_->routes.label(route).c_str(), what.c_str());
    return error_response(status::internal_server_error, "internal server error");
}

void connection::watch_for_disconnect()
{
    watching_ = true;
    socket_.async_wait(
        asio::ip::tcp::socket::wait_read,
        asio::bind_executor(
            executor_, [self = shared_from_this(), request = request_count_](const error_code& ec) {
                if (ec || request != self->request_count_ || self->handler_done_) {
                    return;
                }
                self->on_readable();
            }));
}

void connection::on_readable()
{
    // A peek tells end of stream (0) and errors (a reset) from bytes (a
    // pipelined request, which the next loop reads) and from a stale readiness
    // event left by bytes already read (EAGAIN), after which the watch goes on.
    char byte = 0;
    const auto n = ::recv(socket_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        watch_for_disconnect();
        return;
    }
    watching_ = false;
    if (n <= 0) {
        client_gone_ = true;
        cancel_handler(cancel_reason::client_gone);
    }
}

void connection::start_watch(std::uint64_t request)
{
    if (request == request_count_ && !handler_done_ && !watching_) {
        watch_for_disconnect();
    }
}

void connection::stop_watching()
{
    if (watching_) {
        watching_ = false;
        error_code ignored;
        socket_.cancel(ignored);
    }
}

bool connection::cancel_handler(cancel_reason why)
{
    if (handler_done_ || context_ == nullptr || task_ == nullptr || context_->is_cancelled()) {
        return false;
    }
    context_->mark_cancelled(why);
    tame::detail::task_lane::cancel(*task_, asio::cancellation_type::terminal);
    return true;
}

void connection::close_socket()
{
    phase_ = phase::closed;
    disarm();
    error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
}

void connection::on_deadline()
{
    deadline_posted_.store(false, std::memory_order_release);
    if (deadline() > ticks(server_->now()) || phase_ == phase::closed) {
        return;
    }
    if (phase_ == phase::handling) {
        disarm();
        cancel_handler(cancel_reason::deadline);
        return;
    }
    close_socket();
}

void connection::on_drain()
{
    draining_ = true;
    if (phase_ == phase::waiting) {
        close_socket();
    }
}

void connection::on_drain_timeout()
{
    if (phase_ == phase::handling && !handler_done_) {
        // A handler already cancelled (its deadline, its client gone) is not the
        // shutdown's doing.
        if (cancel_handler(cancel_reason::shutdown)) {
            server_->count_cancelled();
        }
        return;
    }
    close_socket();
}

void connection::on_stop()
{
    cancel_handler(cancel_reason::shutdown);
    close_socket();
}

void connection::log(const access_entry& entry)
{
    if (server_->options.access_log) {
        server_->options.access_log(entry);
    }
}

} // namespace tame::http::detail
