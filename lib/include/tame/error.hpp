#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace tame {

/// The error_code type tame's operations complete with.
using error_code = boost::system::error_code;

/// Expected outcomes of tame operations; bugs are asserted, not listed here.
///
/// Cancellation is reported as `asio::error::operation_aborted` and bad arguments
/// as `asio::error::invalid_argument`, as Asio's own operations do.
enum class errc {
    /// A deadline expired before the operation finished.
    timed_out = 1,
    /// The object was closed; it accepts no more waiters.
    closed,
    /// A pool refused work because too many submitters were already waiting.
    pool_overloaded,
    /// A URL could not be parsed, or lacks a host.
    invalid_url,
    /// A URL names a scheme the client does not speak (`http` for the HTTP
    /// client, `redis` for tame::redis).
    unsupported_scheme,
    /// Redis could not be reached in time: refused, unreachable, or no answer
    /// within the connection's timeouts. A command that fails so may or may not
    /// have run.
    redis_unavailable,
    /// Redis answered a command with an error reply (its text is in the reply).
    redis_error,
    /// A distributed permit's lease ran out before its holder could renew it:
    /// another holder may have the permit now.
    lease_lost,
    /// A tame::breaker dropped the call: the upstream has been failing.
    breaker_open,
};

/// The category of tame::errc, named "tame".
const boost::system::error_category& category() noexcept;

/// Makes an error_code of tame's category; found by argument-dependent lookup.
inline error_code make_error_code(errc e) noexcept
{
    return {static_cast<int>(e), category()};
}

} // namespace tame

template <>
struct boost::system::is_error_code_enum<tame::errc> : std::true_type {
};
