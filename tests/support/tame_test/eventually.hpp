#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace tame_test {

/// Whether `done` comes true within `limit`, asked again and again from this
/// thread: for an effect that must come from another thread (a server's
/// threads, a client's), never for time, which a test moves by hand. The limit
/// only bounds a failure. It yields between two asks rather than sleeping, so
/// that the wait ends as soon as the effect is there.
inline bool eventually(const std::function<bool()>& done,
                       std::chrono::milliseconds limit = std::chrono::seconds{10})
{
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::yield();
    }
    return true;
}

} // namespace tame_test
