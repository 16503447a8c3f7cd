#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace tame {

/// Counters of an async_semaphore since its construction, for metrics.
struct semaphore_stats {
    /// Acquisitions that obtained permits, by any of the acquire functions.
    std::uint64_t acquired = 0;
    /// Acquisitions that had to queue.
    std::uint64_t waited = 0;
    /// Queued acquisitions ended by cancellation.
    std::uint64_t cancelled = 0;
    /// The largest number of acquisitions queued at once.
    std::size_t max_waiting = 0;
    /// Time spent queued by the acquisitions that were granted.
    std::chrono::nanoseconds total_wait{};
};

} // namespace tame
