#pragma once

#include <tame/error.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace tame::redis {

/// Where a Redis server is: `redis://host[:port][/db]`.
struct url {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    /// The database SELECTed on every connection.
    unsigned db = 0;

    /// `redis://host:port/db`, as parse_url() reads it.
    std::string text() const;
};

/// Parses `redis://host[:port][/db]` (Boost.URL). `ec` is errc::invalid_url for
/// a malformed URL, a port out of range, a database that is not a number, or
/// user info or a query (not supported); errc::unsupported_scheme for any
/// scheme but `redis` (TLS, `rediss`, is not supported).
url parse_url(std::string_view text, error_code& ec);

/// The same, throwing boost::system::system_error with a message that names
/// the URL and what is wrong with it.
url parse_url(std::string_view text);

} // namespace tame::redis
