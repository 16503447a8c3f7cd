#include "sync_data/query_args.hpp"

#include <tame/http/json.hpp>

#include <charconv>
#include <string>

namespace samples {

std::uint64_t query_number(const tame::http::request_context& ctx, std::string_view name,
                           std::uint64_t fallback, std::uint64_t min, std::uint64_t max)
{
    const auto text = ctx.query(name);
    if (!text) {
        return fallback;
    }
    std::uint64_t value = 0;
    const char* end = text->data() + text->size();
    const auto [stop, ec] = std::from_chars(text->data(), end, value);
    if (text->empty() || ec != std::errc{} || stop != end || value < min || value > max) {
        throw tame::http::http_error{tame::http::status::bad_request,
                                     "query parameter " + std::string{name} +
                                         " must be a whole number from " + std::to_string(min) +
                                         " to " + std::to_string(max) + ", not '" + *text + "'"};
    }
    return value;
}

bool query_switch(const tame::http::request_context& ctx, std::string_view name)
{
    const auto text = ctx.query(name);
    if (!text || *text == "0" || *text == "false") {
        return false;
    }
    if (text->empty() || *text == "1" || *text == "true") {
        return true;
    }
    throw tame::http::http_error{tame::http::status::bad_request,
                                 "query parameter " + std::string{name} +
                                     " must be 1, true, 0 or false, not '" + *text + "'"};
}

} // namespace samples
