#include <tame/redis/url.hpp>

#include <boost/system/system_error.hpp>
#include <boost/url/parse.hpp>

#include <charconv>

namespace tame::redis {

std::string url::text() const
{
    const bool v6 = host.find(':') != std::string::npos;
    return "redis://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/" +
           std::to_string(db);
}

url parse_url(std::string_view text, error_code& ec)
{
    ec = {};
    auto parsed = boost::urls::parse_absolute_uri(text);
    if (!parsed) {
        ec = errc::invalid_url;
        return {};
    }
    const auto& u = *parsed;
    if (u.scheme() != "redis") {
        ec = errc::unsupported_scheme;
        return {};
    }
    if (!u.has_authority() || u.host().empty() || u.has_userinfo() || u.has_query() ||
        u.has_fragment()) {
        ec = errc::invalid_url;
        return {};
    }
    url out;
    out.host = u.host_address();
    if (u.has_port()) {
        // Read here: Boost.URL's port_number() wraps a number past 65535.
        const std::string_view digits = u.port();
        unsigned port = 0;
        const auto [p, err] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
        if (digits.empty() || err != std::errc{} || p != digits.data() + digits.size() ||
            port == 0 || port > 65535) {
            ec = errc::invalid_url;
            return {};
        }
        out.port = static_cast<std::uint16_t>(port);
    }
    std::string_view path = u.encoded_path();
    if (!path.empty() && path != "/") {
        path.remove_prefix(1);
        unsigned db = 0;
        const auto [p, err] = std::from_chars(path.data(), path.data() + path.size(), db);
        if (err != std::errc{} || p != path.data() + path.size() || db > 1000000) {
            ec = errc::invalid_url;
            return {};
        }
        out.db = db;
    }
    return out;
}

url parse_url(std::string_view text)
{
    error_code ec;
    url out = parse_url(text, ec);
    if (ec) {
        const char* why = ec == errc::unsupported_scheme
                              ? "only redis://host[:port][/db] is supported"
                              : "expected redis://host[:port][/db]";
        throw boost::system::system_error{ec, "bad Redis URL '" + std::string{text} + "': " + why};
    }
    return out;
}

} // namespace tame::redis
