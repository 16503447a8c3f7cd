#pragma once

#include <tame/error.hpp>

namespace tame_test {

/// How a `void(error_code)` operation completed, and how often.
struct error_code_record {
    int completions = 0;
    tame::error_code ec;

    /// A plain callback that records into this object.
    auto handler()
    {
        return [this](tame::error_code e) {
            ++completions;
            ec = e;
        };
    }
};

} // namespace tame_test
