#pragma once

#include <tame/cancel_source.hpp>
#include <tame/http/message.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/url/params_view.hpp>
#include <boost/url/url_view.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tame::http {

/// Why the server cancelled a handler.
enum class cancel_reason {
    /// Not cancelled.
    none,
    /// The client closed its connection (or reset it) while the handler ran.
    client_gone,
    /// The request's deadline (server_options::request_timeout) passed.
    deadline,
    /// The server's drain period ended during a shutdown.
    shutdown,
};

/// Everything a handler knows about its request: Gin's `*gin.Context`, with
/// Go's `Request.Context()` cancellation.
///
/// The handler's awaits are cancelled (terminal) when the client goes away, the
/// request's deadline passes, or the server stops waiting for in-flight requests.
/// Operations that do not run in the handler's coroutine (a task_pool task, a
/// callback) can be tied to the same event with `cancellation().bind(token)`.
///
/// Thread safety: use a context from its handler's coroutine, which runs on the
/// connection's strand (get_executor()).
class request_context {
  public:
    /// A context for `req`, as the server makes it; tests may make their own. The
    /// target is parsed on the first call to path() or the query functions; a
    /// target in neither origin form (`/path?query`) nor absolute form
    /// (`http://host/path?query`), or with a malformed percent escape (`?a=%zz`),
    /// makes them throw http_error(400), which the server answers as such.
    request_context(http::request req, std::vector<std::pair<std::string, std::string>> path_params,
                    asio::ip::tcp::endpoint peer, asio::any_io_executor executor,
                    std::string_view route = {});

    request_context(const request_context&) = delete;
    request_context& operator=(const request_context&) = delete;

    /// The request, body included.
    const http::request& request() const noexcept { return request_; }

    /// The request, which a handler may take apart: move the body out, say, but not
    /// the whole request, as path() and the query views point into its target.
    http::request& request() noexcept { return request_; }

    /// The value of the route's `{name}` parameter, percent-decoded. Throws
    /// std::out_of_range if the route has no such parameter (a bug in the handler).
    const std::string& path_param(std::string_view name) const;

    /// The first query parameter called `name`, percent-decoded (`+` stays `+`),
    /// or nothing if absent. `?flag` gives an empty string.
    std::optional<std::string> query(std::string_view name) const;

    /// Every query parameter, in order (Boost.URL's view; decoded on access).
    boost::urls::params_view query_params() const { return target().params(); }

    /// The target's path, still percent-encoded (empty for an absolute-form target
    /// without one, which routes as "/").
    std::string_view path() const { return target().encoded_path(); }

    /// The route that matched, as metrics name it ("GET /jobs/{id}"); empty for a
    /// context made by hand.
    std::string_view route() const noexcept { return route_; }

    /// The client's address and port.
    const asio::ip::tcp::endpoint& peer() const noexcept { return peer_; }

    /// The connection's strand, on which the handler runs.
    const asio::any_io_executor& get_executor() const noexcept { return executor_; }

    /// A source emitted when the handler is cancelled, for work the handler starts
    /// outside its own coroutine: `pool.async_run(f, ctx.cancellation().bind(token))`.
    /// Made on first use, so a handler that never asks pays nothing.
    cancel_source cancellation();

    /// Why the handler was cancelled, or cancel_reason::none.
    http::cancel_reason cancel_reason() const noexcept { return reason_; }

    /// Whether the handler was cancelled.
    bool is_cancelled() const noexcept { return reason_ != http::cancel_reason::none; }

    /// Records the cancellation and emits cancellation() if it was made; the
    /// server calls it on the strand, just before it cancels the handler's awaits.
    void mark_cancelled(http::cancel_reason why);

  private:
    http::request request_;
    // Parsed on first use: a handler that reads no query pays nothing.
    const boost::urls::url_view& target() const;
    mutable std::optional<boost::urls::url_view> target_;
    std::vector<std::pair<std::string, std::string>> path_params_;
    asio::ip::tcp::endpoint peer_;
    asio::any_io_executor executor_;
    std::string_view route_;
    std::optional<cancel_source> cancellation_;
    http::cancel_reason reason_ = http::cancel_reason::none;
};

} // namespace tame::http
