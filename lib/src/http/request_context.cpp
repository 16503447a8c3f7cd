#include <tame/http/request_context.hpp>

#include <tame/http/json.hpp>

#include "request_target.hpp"

#include <stdexcept>

namespace tame::http {

request_context::request_context(http::request req,
                                 std::vector<std::pair<std::string, std::string>> path_params,
                                 asio::ip::tcp::endpoint peer, asio::any_io_executor executor,
                                 std::string_view route)
    : request_{std::move(req)}, path_params_{std::move(path_params)}, peer_{std::move(peer)},
      executor_{std::move(executor)}, route_{route}
{
}

const boost::urls::url_view& request_context::target() const
{
    // The view points into request_'s target, which stays put: the context is
    // neither copied nor moved.
    if (!target_) {
        auto parsed = detail::parse_request_target(request_.target());
        if (!parsed) {
            // Reached through the query only: the router has already refused a
            // path with a malformed escape. Not an empty view instead, which the
            // handler could not tell from "no parameters"; besides, Boost.URL
            // 1.81 gives a copy of an empty url_view a pointer into the original
            // (a crash the HTTP fuzzer found when that copy was made here).
            throw http_error{status::bad_request,
                             "malformed request target: " + parsed.error().message()};
        }
        target_.emplace(*parsed);
    }
    return *target_;
}

const std::string& request_context::path_param(std::string_view name) const
{
    for (const auto& [key, value] : path_params_) {
        if (key == name) {
            return value;
        }
    }
    throw std::out_of_range{"tame::http::request_context: the route has no parameter '" +
                            std::string{name} + "'"};
}

std::optional<std::string> request_context::query(std::string_view name) const
{
    const auto params = target().params();
    auto it = params.find(name);
    if (it == params.end()) {
        return std::nullopt;
    }
    return std::string{(*it).value};
}

cancel_source request_context::cancellation()
{
    if (!cancellation_) {
        cancellation_.emplace();
        if (is_cancelled()) {
            cancellation_->emit();
        }
    }
    return *cancellation_;
}

void request_context::mark_cancelled(http::cancel_reason why)
{
    if (is_cancelled()) {
        return;
    }
    reason_ = why;
    if (cancellation_) {
        cancellation_->emit();
    }
}

} // namespace tame::http
