#pragma once

// Request targets as RFC 9112 §3.2 allows them for ordinary requests: origin
// form (`/path?query`) and absolute form (`http://host/path?query`, which
// servers must accept). Private to lib/src/http.

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <string_view>

namespace tame::http::detail {

inline boost::system::result<boost::urls::url_view> parse_request_target(std::string_view target)
{
    if (!target.empty() && target.front() == '/') {
        return boost::urls::parse_origin_form(target);
    }
    return boost::urls::parse_absolute_uri(target);
}

/// The path to route on: an absolute-form target may have none, which means "/".
inline std::string_view routing_path(const boost::urls::url_view& target)
{
    const auto path = target.encoded_path();
    return path.empty() ? std::string_view{"/"} : std::string_view{path};
}

} // namespace tame::http::detail
