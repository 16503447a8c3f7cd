#pragma once

// Request targets as RFC 9112 §3.2 allows them for ordinary requests: origin
// form (`/path?query`) and absolute form (`http://host/path?query`, which
// servers must accept). Private to lib/src/http.

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <optional>
#include <string_view>

namespace tame::http::detail {

inline boost::system::result<boost::urls::url_view> parse_request_target(std::string_view target)
{
    if (!target.empty() && target.front() == '/') {
        return boost::urls::parse_origin_form(target);
    }
    return boost::urls::parse_absolute_uri(target);
}

/// The still-encoded path to route on, or nothing for a target that is not a
/// request target. Origin form, nearly every request, is split at '?' without a
/// full parse: Beast's parser has already refused bytes a target may not hold,
/// and the router refuses malformed escapes. An absolute-form target may have no
/// path, which means "/".
inline std::optional<std::string_view> routing_path(std::string_view target)
{
    if (!target.empty() && target.front() == '/') {
        return target.substr(0, target.find('?'));
    }
    auto absolute = boost::urls::parse_absolute_uri(target);
    if (!absolute) {
        return std::nullopt;
    }
    // The path is a view into `target`, which the url_view only refers to.
    const auto path = absolute->encoded_path();
    return path.empty() ? std::string_view{"/"} : std::string_view{path.data(), path.size()};
}

} // namespace tame::http::detail
