#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace tame {

/// What tame::breaker's gauge says of it.
enum class breaker_state {
    /// Every call goes through: the drop probability is 0.
    closed,
    /// Calls are dropped with the drop probability.
    open,
    /// Open, and a probe let through after a quiet period is on its way.
    half_open,
};

/// tame::breaker's parameters, by default go-zero's googlebreaker's.
struct breaker_options {
    /// The rolling window of outcomes, and how many buckets it is cut into
    /// (10 s in 40 buckets of 250 ms): outcomes older than the window are
    /// forgotten a bucket at a time.
    std::chrono::milliseconds window{10000};
    std::size_t buckets = 40;
    /// K of the SRE book's formula: how many requests per accepted one are
    /// let through before any is dropped (1.5: a third of the calls may fail
    /// before dropping starts). Lower is more aggressive.
    double k = 1.5;
    /// Requests in the window that never count toward dropping, so that a
    /// quiet breaker does not open on its first few failures.
    std::size_t protection = 5;
    /// When nothing has been let through for this long while the breaker
    /// drops, the next call goes through anyway: a probe of the upstream.
    std::chrono::milliseconds force_pass_after{1000};
    /// The clock (the steady clock by default); a test gives one it moves.
    std::function<std::chrono::steady_clock::time_point()> clock;
    /// Uniform draws in [0, 1) that decide each drop (a fast per-thread
    /// generator by default); a test gives a scripted sequence.
    std::function<double()> random;
};

/// Counts since the breaker was made, and the window now.
struct breaker_stats {
    std::uint64_t accepted = 0; ///< calls marked a success
    std::uint64_t failed = 0;   ///< calls marked a failure (or left unmarked)
    std::uint64_t dropped = 0;  ///< calls refused by the breaker
    std::uint64_t window_requests = 0;
    std::uint64_t window_accepts = 0;
    double drop_probability = 0;
    breaker_state state = breaker_state::closed;
};

/// Client-side adaptive throttling, from Google's SRE book ("Handling
/// Overload"), as go-zero's googlebreaker does it: over a rolling window, a
/// call is dropped with probability
///
///     max(0, (requests - protection - k * accepts) / (requests + 1))
///
/// where `requests` counts every call the caller attempted (dropped ones
/// included, as the book counts them) and `accepts` those the upstream
/// served. A failing upstream quickly sees few calls; as it recovers, the
/// accepts come back and so do the calls, with no half-open state to tune.
///
/// allow() returns a guard: marked success() or failure() when the call ends
/// (destroyed unmarked, it counts as a failure; ignore() counts nothing, for a
/// call its own caller cancelled). An empty guard means the call is dropped.
/// with_breaker() (`<tame/with_breaker.hpp>`) runs an awaitable under it.
///
/// Thread safety: every member may be called from any thread; no lock is
/// taken (each bucket is one atomic word). The breaker must outlive its guards.
class breaker {
  public:
    class guard {
      public:
        guard() noexcept = default;
        guard(guard&& other) noexcept;
        guard& operator=(guard&& other) noexcept;
        guard(const guard&) = delete;
        guard& operator=(const guard&) = delete;
        /// Unmarked: a failure.
        ~guard() { failure(); }

        /// Whether the call may go ahead (and has not been marked yet).
        explicit operator bool() const noexcept { return owner_ != nullptr; }
        /// Whether it goes ahead as the probe of an open breaker.
        bool is_probe() const noexcept { return probe_; }

        /// The upstream served the call. Only the first mark counts.
        void success() noexcept { mark(outcome::accepted); }
        /// The upstream failed or timed out.
        void failure() noexcept { mark(outcome::failed); }
        /// The call ended for a reason that says nothing of the upstream (its
        /// caller cancelled it): it is not counted.
        void ignore() noexcept { mark(outcome::ignored); }

      private:
        friend class breaker;
        enum class outcome { accepted, failed, ignored };
        guard(breaker* owner, bool probe) noexcept : owner_{owner}, probe_{probe} {}
        void mark(outcome o) noexcept;

        breaker* owner_ = nullptr;
        bool probe_ = false;
    };

    explicit breaker(breaker_options options = {});
    breaker(const breaker&) = delete;
    breaker& operator=(const breaker&) = delete;

    /// Decides one call: a guard that lets it go ahead, or an empty one.
    guard allow() noexcept;

    /// The probability with which a call is dropped now.
    double drop_probability() const noexcept;
    /// closed, open, or half_open while a forced probe is on its way.
    breaker_state state() const noexcept;
    /// The counts since construction and the window now, for metrics.
    breaker_stats stats() const noexcept;
    const breaker_options& options() const noexcept { return options_; }

  private:
    struct window_counts {
        std::uint64_t requests = 0;
        std::uint64_t accepts = 0;
    };

    std::int64_t tick(std::chrono::steady_clock::time_point now) const noexcept;
    window_counts counts(std::int64_t tick) const noexcept;
    double probability(const window_counts& c) const noexcept;
    void record(bool accepted) noexcept;
    double draw() const;

    breaker_options options_;
    std::chrono::steady_clock::duration bucket_width_;
    // Each bucket is one word: the tick it counts (24 bits), its accepts and
    // its requests (20 bits each, saturating).
    std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
    std::atomic<std::int64_t> last_pass_{0}; // clock ticks (ns) of the last call let through
    std::atomic<std::int64_t> probes_{0};    // forced probes on their way
    std::atomic<std::uint64_t> accepted_{0};
    std::atomic<std::uint64_t> failed_{0};
    std::atomic<std::uint64_t> dropped_{0};
};

} // namespace tame
