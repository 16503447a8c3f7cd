#pragma once

#include <tame/http/message.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tame::http {

class request_context;

/// A route's handler: a coroutine from the request's context to its response.
///
/// It runs on the connection's strand. Its awaits are cancelled (terminal) when the
/// client goes away, the request's deadline passes or the server's drain period
/// ends; see request_context.
using handler = std::function<asio::awaitable<response>(request_context&)>;

/// What router::match() found for a method and path.
struct route_match {
    /// Whether a route matched, or why not.
    enum class outcome { found, not_found, method_not_allowed };

    /// The outcome of the match.
    outcome result = outcome::not_found;
    /// The matching route's index (valid when found).
    std::size_t index = 0;
    /// The `{param}` values, percent-decoded, in pattern order (when found).
    std::vector<std::pair<std::string, std::string>> params;
    /// The methods the path does accept, for `Allow` (when method_not_allowed).
    std::string allow;
};

/// Maps a method and a path to a handler, as Gin's or go-zero's routers do.
///
/// A pattern is a path whose segments are literals or `{name}` parameters:
/// `/jobs/{id}` matches `/jobs/42` with `id` = `42`. Literals are compared with the
/// percent-decoded segment, and a parameter takes one whole non-empty segment. When
/// several routes match, the one with a literal at the first differing segment wins
/// (`/jobs/stats` beats `/jobs/{id}`). A GET route also answers HEAD. Trailing
/// slashes are significant.
///
/// Thread safety: add routes before the server starts; match() is then safe from
/// any thread.
class router {
  public:
    /// Adds a route. Throws std::invalid_argument for a pattern that does not start
    /// with `/`, has an empty or repeated parameter name, or duplicates a route.
    router& add(verb method, std::string_view pattern, handler h);

    /// add(verb::get, …).
    router& get(std::string_view pattern, handler h)
    {
        return add(verb::get, pattern, std::move(h));
    }

    /// add(verb::post, …).
    router& post(std::string_view pattern, handler h)
    {
        return add(verb::post, pattern, std::move(h));
    }

    /// add(verb::put, …).
    router& put(std::string_view pattern, handler h)
    {
        return add(verb::put, pattern, std::move(h));
    }

    /// add(verb::delete_, …).
    router& del(std::string_view pattern, handler h)
    {
        return add(verb::delete_, pattern, std::move(h));
    }

    /// Whether a route with this method and pattern exists.
    bool contains(verb method, std::string_view pattern) const;

    /// The route for `method` and `encoded_path` (a request target's path, still
    /// percent-encoded, without its query).
    route_match match(verb method, std::string_view encoded_path) const;

    /// The number of routes.
    std::size_t size() const noexcept { return routes_.size(); }

    /// The handler of route `index`.
    const handler& handler_at(std::size_t index) const { return routes_.at(index).handle; }

    /// Route `index` as metrics and logs name it: "GET /jobs/{id}".
    const std::string& label(std::size_t index) const { return routes_.at(index).label; }

  private:
    struct segment {
        std::string text;
        bool is_param = false;
    };
    struct route {
        verb method;
        std::vector<segment> segments;
        std::string label;
        handler handle;
    };

    static std::vector<segment> parse_pattern(std::string_view pattern);
    static bool same_shape(const std::vector<segment>& a, const std::vector<segment>& b);
    static bool more_specific(const route& a, const route& b);

    std::vector<route> routes_;
};

} // namespace tame::http
