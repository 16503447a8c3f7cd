#pragma once

#include <tame/error.hpp>
#include <tame/permit.hpp>

#include <utility>

namespace tame_test {

/// What an async_acquire completed with, and how often it completed.
struct acquire_result {
    int completions = 0;
    tame::error_code ec;
    tame::permit permit;

    bool done() const noexcept { return completions > 0; }
};

/// A plain callback that stores the outcome of an acquire in `result`.
inline auto record(acquire_result& result)
{
    return [&result](tame::error_code ec, tame::permit p) {
        ++result.completions;
        result.ec = ec;
        result.permit = std::move(p);
    };
}

} // namespace tame_test
