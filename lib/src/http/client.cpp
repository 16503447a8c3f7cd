#include "read_body.hpp"

#include <tame/http/client.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <limits>
#include <memory>
#include <optional>

namespace tame::http::detail {
namespace {

namespace beast = boost::beast;
using tcp = asio::ip::tcp;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct endpoint_parts {
    std::string host;
    std::string port;
    std::string target;
    std::string host_field;
};

error_code split_url(std::string_view url, endpoint_parts& out)
{
    auto parsed = boost::urls::parse_uri(url);
    if (!parsed) {
        return errc::invalid_url;
    }
    if (parsed->scheme_id() != boost::urls::scheme::http) {
        return errc::unsupported_scheme;
    }
    if (parsed->encoded_host().empty()) {
        return errc::invalid_url;
    }
    // An IPv6 literal is bracketed in the URL and in Host, but not for the resolver.
    out.host = parsed->host_type() == boost::urls::host_type::ipv6
                   ? parsed->host_ipv6_address().to_string()
                   : std::string{parsed->host_name()};
    if (parsed->host_type() == boost::urls::host_type::ipv4) {
        out.host = parsed->host_ipv4_address().to_string();
    }
    out.port = parsed->has_port() ? std::string{parsed->port()} : "80";
    out.target = parsed->encoded_path().empty() ? "/" : std::string{parsed->encoded_path()};
    if (parsed->has_query()) {
        out.target += '?';
        out.target += parsed->encoded_query();
    }
    out.host_field = std::string{parsed->encoded_host_and_port()};
    return {};
}

/// One request's exchange, on its own strand. Cancellation closes the socket
/// (or cancels the resolve) from the strand.
class exchange : public std::enable_shared_from_this<exchange> {
  public:
    exchange(const asio::any_io_executor& ex, endpoint_parts parts, request req,
             client_options options)
        : strand_{asio::make_strand(ex)}, resolver_{strand_}, socket_{strand_},
          parts_{std::move(parts)}, req_{std::move(req)}, options_{options}
    {
    }

    const asio::any_io_executor& strand() const noexcept { return strand_; }

    void cancel()
    {
        cancelled_ = true;
        resolver_.cancel();
        error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_both, ignored);
        socket_.close(ignored);
    }

    asio::awaitable<std::tuple<error_code, response>> run()
    {
        auto fail = [this](error_code ec) {
            return std::tuple{cancelled_ ? error_code{asio::error::operation_aborted} : ec,
                              response{}};
        };
        if (cancelled_) {
            co_return fail({});
        }

        auto [resolve_ec, endpoints] =
            co_await resolver_.async_resolve(parts_.host, parts_.port, use_tuple);
        if (resolve_ec || cancelled_) {
            co_return fail(resolve_ec);
        }
        auto [connect_ec, endpoint] = co_await asio::async_connect(socket_, endpoints, use_tuple);
        if (connect_ec || cancelled_) {
            co_return fail(connect_ec);
        }

        req_.target(parts_.target);
        req_.set(field::host, parts_.host_field);
        if (req_.find(field::user_agent) == req_.end()) {
            req_.set(field::user_agent, "tame-http");
        }
        req_.keep_alive(false);
        req_.prepare_payload();
        auto [write_ec, written] = co_await beast::http::async_write(socket_, req_, use_tuple);
        if (write_ec || cancelled_) {
            co_return fail(write_ec);
        }

        beast::http::response_parser<beast::http::string_body> parser;
        parser.body_limit(options_.body_limit);
        parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
            options_.header_limit, std::numeric_limits<std::uint32_t>::max())));
        if (req_.method() == verb::head) {
            parser.skip(true);
        }
        beast::flat_buffer buffer;
        auto [header_ec, header_bytes] =
            co_await beast::http::async_read_header(socket_, buffer, parser, use_tuple);
        if (header_ec || cancelled_) {
            co_return fail(header_ec);
        }
        auto body_ec = put_buffered(parser, buffer);
        if (!body_ec) {
            body_ec = co_await read_body(socket_, buffer, parser, options_.header_limit);
        }
        if (body_ec || cancelled_) {
            co_return fail(body_ec);
        }
        error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_both, ignored);
        socket_.close(ignored);
        co_return std::tuple{error_code{}, parser.release()};
    }

  private:
    asio::any_io_executor strand_;
    tcp::resolver resolver_;
    tcp::socket socket_;
    endpoint_parts parts_;
    request req_;
    client_options options_;
    bool cancelled_ = false;
};

/// Completes `handler` on its associated executor, after taking it out of its
/// slot there (the slot belongs to that executor).
void complete(asio::any_completion_handler<void(error_code, response)> handler,
              const asio::any_io_executor& ex, error_code ec, response res)
{
    auto handler_ex = asio::get_associated_executor(handler, ex);
    asio::post(ex, asio::bind_executor(
                       handler_ex, [h = std::move(handler), ec, res = std::move(res)]() mutable {
                           asio::get_associated_cancellation_slot(h).clear();
                           std::move(h)(ec, std::move(res));
                       }));
}

} // namespace

void start_request(asio::any_io_executor ex, std::string url, request req, client_options options,
                   asio::any_completion_handler<void(error_code, response)> handler)
{
    endpoint_parts parts;
    if (auto ec = split_url(url, parts)) {
        complete(std::move(handler), ex, ec, {});
        return;
    }
    auto op = std::make_shared<exchange>(ex, std::move(parts), std::move(req), options);
    // Outstanding work on the handler's executor until it is called, as an Asio
    // operation keeps: a run() of that executor alone waits for the exchange.
    auto work = asio::prefer(asio::get_associated_executor(handler, ex),
                             asio::execution::outstanding_work.tracked);

    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) {
        slot.assign([weak = std::weak_ptr<exchange>{op}](asio::cancellation_type) {
            if (auto o = weak.lock()) {
                asio::post(o->strand(), [o] { o->cancel(); });
            }
        });
    }
    asio::co_spawn(op->strand(), op->run(),
                   [op, ex, work = std::move(work), h = std::move(handler)](
                       std::exception_ptr ep, std::tuple<error_code, response> result) mutable {
                       auto& [ec, res] = result;
                       if (ep) {
                           // Only allocation failure throws out of run().
                           ec = asio::error::no_memory;
                       }
                       complete(std::move(h), ex, ec, std::move(res));
                       work = {};
                   });
}

} // namespace tame::http::detail
