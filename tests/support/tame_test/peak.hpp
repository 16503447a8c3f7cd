#pragma once

#include <atomic>

namespace tame_test {

/// Raises `peak` to at least `value`, from any thread.
inline void raise_to(std::atomic<int>& peak, int value)
{
    int seen = peak.load();
    while (seen < value && !peak.compare_exchange_weak(seen, value)) {
    }
}

} // namespace tame_test
