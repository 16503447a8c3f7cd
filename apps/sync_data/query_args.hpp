#pragma once

#include <tame/http/request_context.hpp>

#include <cstdint>
#include <string_view>

namespace samples {

/// The query parameter `name` as a whole number in [min, max]; `fallback` when
/// it is absent. Anything else (empty, a sign, a fraction, out of range) throws
/// tame::http::http_error 400 naming the parameter and the range.
std::uint64_t query_number(const tame::http::request_context& ctx, std::string_view name,
                           std::uint64_t fallback, std::uint64_t min, std::uint64_t max);

/// The query parameter `name` as a switch: absent, `0` or `false` is false;
/// present with no value, `1` or `true` is true; anything else is a 400.
bool query_switch(const tame::http::request_context& ctx, std::string_view name);

} // namespace samples
