#pragma once

#include <tame/limit_algorithm.hpp>

#include <chrono>
#include <cstddef>

namespace tame {

/// tame::aimd_limit's parameters; the defaults are Netflix concurrency-limits'
/// (AIMDLimit.Builder).
struct aimd_options {
    std::size_t initial_limit = 20;
    std::size_t min_limit = 20;
    std::size_t max_limit = 200;
    /// What a drop multiplies the limit by; in [0.5, 1).
    double backoff_ratio = 0.9;
    /// A call slower than this counts as a drop.
    std::chrono::nanoseconds timeout = std::chrono::seconds{5};
};

/// Additive increase, multiplicative decrease, as Netflix concurrency-limits'
/// AIMDLimit: on each sample,
///
///     dropped or rtt > timeout:          limit = floor(limit * backoff_ratio)
///     else if 2 * in_flight >= limit:    limit = limit + 1
///
/// then clamped to [min_limit, max_limit]. A limit only grows while at least
/// half of it is used, so an idle caller does not inflate it. Loss-driven: it
/// reacts to failures and timeouts, not to latency that grows but stays under
/// the timeout (gradient2_limit does).
class aimd_limit final : public limit_algorithm {
  public:
    /// Throws std::invalid_argument unless 1 <= min_limit <= initial_limit <=
    /// max_limit, 0.5 <= backoff_ratio < 1 and timeout > 0.
    explicit aimd_limit(aimd_options options = {});

    std::size_t initial_limit() const noexcept override { return options_.initial_limit; }
    std::size_t update(const limit_sample& sample) override;

    /// The limit now.
    std::size_t limit() const noexcept { return limit_; }
    const aimd_options& options() const noexcept { return options_; }

  private:
    aimd_options options_;
    std::size_t limit_;
};

} // namespace tame
