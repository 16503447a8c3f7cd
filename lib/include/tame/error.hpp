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
    /// A URL names a scheme the HTTP client does not speak (only `http`).
    unsupported_scheme,
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
