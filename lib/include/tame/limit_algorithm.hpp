#pragma once

#include <chrono>
#include <cstddef>

namespace tame {

/// One finished call, as a concurrency limit algorithm learns of it.
struct limit_sample {
    /// From the grant of the call's permit to its release.
    std::chrono::nanoseconds rtt{};
    /// Permits held when this one was granted, itself included (Netflix's
    /// `inflight`): how busy the limit was while the call ran.
    std::size_t in_flight = 0;
    /// The call failed for a reason that says the limit is too high: a timeout,
    /// a refusal by the upstream (Netflix's `didDrop`).
    bool dropped = false;
};

/// How a tame::adaptive_limit moves: an algorithm fed one sample per finished
/// call. tame::aimd_limit and tame::gradient2_limit are Netflix
/// concurrency-limits' AIMDLimit and Gradient2Limit; an application may write
/// its own.
///
/// Thread safety: adaptive_limit calls update() under its own lock, one sample
/// at a time, so an algorithm needs none of its own.
class limit_algorithm {
  public:
    virtual ~limit_algorithm() = default;

    /// The limit before any sample.
    virtual std::size_t initial_limit() const noexcept = 0;

    /// Learns from one sample; returns the limit now (at least 1).
    virtual std::size_t update(const limit_sample& sample) = 0;

  protected:
    limit_algorithm() = default;
    limit_algorithm(const limit_algorithm&) = default;
    limit_algorithm& operator=(const limit_algorithm&) = default;
};

} // namespace tame
