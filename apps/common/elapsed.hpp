#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>

namespace samples {

/// Whole milliseconds from `from` to `to`, rounded: what the services report
/// as `elapsed_ms` (Boost.JSON would print a double as 1.0234E2).
inline std::int64_t
elapsed_ms(std::chrono::steady_clock::time_point from,
           std::chrono::steady_clock::time_point to = std::chrono::steady_clock::now())
{
    return std::llround(std::chrono::duration<double, std::milli>(to - from).count());
}

} // namespace samples
