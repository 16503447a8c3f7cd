#pragma once

#include <tame/limit_algorithm.hpp>

#include <cstddef>

namespace tame {

/// tame::gradient2_limit's parameters; the defaults are Netflix
/// concurrency-limits' (Gradient2Limit.Builder).
struct gradient2_options {
    std::size_t initial_limit = 20;
    std::size_t min_limit = 20;
    /// Netflix's maxConcurrency.
    std::size_t max_limit = 200;
    /// How much of each new estimate replaces the limit, in (0, 1].
    double smoothing = 0.2;
    /// How far the limit may grow past the gradient's estimate while latency
    /// stays low (Netflix also takes a function of the limit; this is its
    /// default constant).
    double queue_size = 4;
    /// Samples averaged into the long-term RTT (an exponential average with
    /// factor 2 / (long_window + 1), after a plain mean of the first 10).
    std::size_t long_window = 600;
    /// How much slower than the long-term RTT a sample may be before the limit
    /// shrinks; >= 1.
    double rtt_tolerance = 1.5;
};

/// The limit follows the ratio of the long-term RTT to the latest one, as
/// Netflix concurrency-limits' Gradient2Limit: on each sample,
///
///     long_rtt = exponential average of rtt (see long_window)
///     if long_rtt / rtt > 2: long_rtt *= 0.95      (recovering from a long overload)
///     if in_flight < estimate / 2: no change       (the caller is not using the limit)
///     gradient = clamp(rtt_tolerance * long_rtt / rtt, 0.5, 1)
///     estimate = estimate * (1 - smoothing) + (estimate * gradient + queue_size) * smoothing
///
/// clamped to [min_limit, max_limit]; the limit is the estimate rounded down.
/// Latency-driven: `dropped` is not read (as in Netflix's), so a failing upstream
/// that answers fast keeps its limit; pair it with a tame::breaker.
class gradient2_limit final : public limit_algorithm {
  public:
    /// Throws std::invalid_argument unless 1 <= min_limit <= initial_limit <=
    /// max_limit, 0 < smoothing <= 1, queue_size >= 0, long_window >= 1 and
    /// rtt_tolerance >= 1.
    explicit gradient2_limit(gradient2_options options = {});

    std::size_t initial_limit() const noexcept override { return options_.initial_limit; }
    std::size_t update(const limit_sample& sample) override;

    /// The limit now: the estimate rounded down.
    std::size_t limit() const noexcept { return static_cast<std::size_t>(estimate_); }
    /// The estimate, unrounded.
    double estimate() const noexcept { return estimate_; }
    /// The long-term RTT in nanoseconds; 0 before the first sample.
    double long_rtt() const noexcept { return long_rtt_; }
    const gradient2_options& options() const noexcept { return options_; }

  private:
    void add_to_long_rtt(double rtt) noexcept;

    gradient2_options options_;
    double estimate_;
    double long_rtt_ = 0;
    double long_rtt_sum_ = 0;
    std::size_t long_rtt_count_ = 0;
};

} // namespace tame
