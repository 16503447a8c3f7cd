#pragma once

#include <tame/error.hpp>
#include <tame/http/message.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

namespace tame::http {

/// Limits of one client request.
struct client_options {
    /// Largest response body accepted; a larger one fails with Beast's
    /// `http::error::body_limit`.
    std::size_t body_limit = 8 * 1024 * 1024;
    /// Largest response status line plus headers.
    std::size_t header_limit = 16 * 1024;
};

namespace detail {
void start_request(asio::any_io_executor ex, std::string url, request req, client_options options,
                   asio::any_completion_handler<void(error_code, response)> handler);

// Names its executor, as an I/O object's initiation does, so that adapters such
// as tame::cancel_after have an executor for their timer.
struct initiate_request {
    using executor_type = asio::any_io_executor;
    asio::any_io_executor executor;

    executor_type get_executor() const noexcept { return executor; }

    template <class Handler>
    void operator()(Handler&& handler, std::string url, request req, client_options options) const
    {
        start_request(executor, std::move(url), std::move(req), options,
                      asio::any_completion_handler<void(error_code, response)>{
                          std::forward<Handler>(handler)});
    }
};
} // namespace detail

/// Sends `req` to `url` (`http://host[:port]/path?query`) on a new connection and
/// reads the response: resolve, connect, write, read, close.
///
/// The target, Host and User-Agent (if absent) come from the URL, Content-Length
/// from the body; the connection is not kept alive.
///
/// Completion signature: `void(error_code, response)`. Errors:
/// tame::errc::invalid_url and tame::errc::unsupported_scheme for a URL that is
/// not plain `http://host…`; the resolver's and the socket's errors
/// (`connection_refused`, …); Beast's parser errors for a malformed response or
/// one over the client_options limits; `operation_aborted` when cancelled.
///
/// Cancellation: any type. The socket is closed at once, so the server sees the
/// client leave; use tame::cancel_after or with_timeout for a deadline.
///
/// The exchange runs on a strand of its own made from `ex`; the handler runs on
/// its associated executor (by default `ex`), never inside this call.
template <class Token>
auto async_request(asio::any_io_executor ex, std::string_view url, request req,
                   client_options options, Token&& token)
{
    return asio::async_initiate<Token, void(error_code, response)>(
        detail::initiate_request{std::move(ex)}, token, std::string{url}, std::move(req), options);
}

/// async_request() with the default client_options.
template <class Token>
auto async_request(asio::any_io_executor ex, std::string_view url, request req, Token&& token)
{
    return async_request(std::move(ex), url, std::move(req), client_options{},
                         std::forward<Token>(token));
}

/// A GET of `url`; see async_request().
template <class Token>
auto async_get(asio::any_io_executor ex, std::string_view url, Token&& token)
{
    return async_request(std::move(ex), url, request{verb::get, "/", 11}, client_options{},
                         std::forward<Token>(token));
}

} // namespace tame::http
