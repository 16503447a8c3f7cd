// Serving one request on its connection: routing, the in-flight cap, running
// the handler in the connection's coroutine, and writing its answer.
#include "connection.hpp"
#include "request_target.hpp"

#include <tame/http/json.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/write.hpp>

#include <cstdio>
#include <optional>
#include <string>

namespace tame::http::detail {
namespace {

namespace beast = boost::beast;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

} // namespace

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
    adaptive_shedder::ticket admitted; // empty unless the shedder let the request in
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
                server.metrics.record_shed(shed_reason::max_in_flight);
                res = error_response(status::service_unavailable,
                                     "too many requests in flight; retry later");
                res.set(field::retry_after, std::to_string(options.retry_after.count()));
                break;
            }
            if (route < server.first_builtin_route && server.shedder) {
                admitted = server.shedder->allow();
                if (!admitted) {
                    server.leave_handler();
                    server.metrics.record_shed(shed_reason::overload);
                    res = error_response(status::service_unavailable,
                                         "the server is overloaded; retry later");
                    res.set(field::retry_after, std::to_string(options.retry_after.count()));
                    break;
                }
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
            // As go-zero's shedding middleware: a 5xx is a failure, whose time
            // says nothing of what the server carries.
            if (res.result_int() >= 500) {
                admitted.fail();
            } else {
                admitted.pass();
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

void connection::log(const access_entry& entry)
{
    if (server_->options.access_log) {
        server_->options.access_log(entry);
    }
}

} // namespace tame::http::detail
