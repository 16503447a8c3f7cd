// Netflix concurrency-limits' AIMDLimit and Gradient2Limit
// (github.com/Netflix/concurrency-limits, concurrency-limits-core, limit/),
// step for step, so that a sample moves a tame limit as it moves theirs.
#include <tame/aimd_limit.hpp>
#include <tame/gradient2_limit.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace tame {
namespace {

void check_limits(std::size_t min_limit, std::size_t initial, std::size_t max_limit,
                  const char* what)
{
    if (min_limit < 1 || initial < min_limit || max_limit < initial) {
        throw std::invalid_argument{std::string{what} +
                                    ": needs 1 <= min_limit <= initial_limit <= max_limit"};
    }
}

/// Warm-up of the long-term RTT: a plain mean of this many samples first.
constexpr std::size_t long_rtt_warmup = 10;

} // namespace

aimd_limit::aimd_limit(aimd_options options) : options_{options}, limit_{options.initial_limit}
{
    check_limits(options_.min_limit, options_.initial_limit, options_.max_limit,
                 "tame::aimd_limit");
    if (!(options_.backoff_ratio >= 0.5 && options_.backoff_ratio < 1.0)) {
        throw std::invalid_argument{"tame::aimd_limit: backoff_ratio must be in [0.5, 1)"};
    }
    if (options_.timeout.count() <= 0) {
        throw std::invalid_argument{"tame::aimd_limit: timeout must be positive"};
    }
}

std::size_t aimd_limit::update(const limit_sample& sample)
{
    std::size_t next = limit_;
    if (sample.dropped || sample.rtt > options_.timeout) {
        next = static_cast<std::size_t>(static_cast<double>(limit_) * options_.backoff_ratio);
    } else if (sample.in_flight * 2 >= limit_) {
        next = limit_ + 1;
    }
    limit_ = std::clamp(next, options_.min_limit, options_.max_limit);
    return limit_;
}

gradient2_limit::gradient2_limit(gradient2_options options)
    : options_{options}, estimate_{static_cast<double>(options.initial_limit)}
{
    check_limits(options_.min_limit, options_.initial_limit, options_.max_limit,
                 "tame::gradient2_limit");
    if (!(options_.smoothing > 0 && options_.smoothing <= 1) || !(options_.queue_size >= 0) ||
        options_.long_window < 1 || !(options_.rtt_tolerance >= 1)) {
        throw std::invalid_argument{
            "tame::gradient2_limit: needs 0 < smoothing <= 1, queue_size >= 0, long_window >= 1 "
            "and rtt_tolerance >= 1"};
    }
}

void gradient2_limit::add_to_long_rtt(double rtt) noexcept
{
    if (long_rtt_count_ < long_rtt_warmup) {
        ++long_rtt_count_;
        long_rtt_sum_ += rtt;
        long_rtt_ = long_rtt_sum_ / static_cast<double>(long_rtt_count_);
        return;
    }
    const double factor = 2.0 / (static_cast<double>(options_.long_window) + 1);
    long_rtt_ = long_rtt_ * (1 - factor) + rtt * factor;
}

std::size_t gradient2_limit::update(const limit_sample& sample)
{
    // A call measured at 0 ns (a coarse or a test's clock) counts as 1 ns, so
    // that the ratios below stay numbers.
    const double short_rtt = std::max(1.0, static_cast<double>(sample.rtt.count()));
    add_to_long_rtt(short_rtt);
    const double long_rtt = long_rtt_; // this sample's gradient uses it before any decay

    // After a long overload the long-term RTT lags far behind: let it fall
    // faster than its average would.
    if (long_rtt / short_rtt > 2) {
        long_rtt_ *= 0.95;
    }

    // Not using half of the limit: nothing learnt about a higher one.
    if (static_cast<double>(sample.in_flight) < estimate_ / 2) {
        return limit();
    }

    const double gradient = std::clamp(options_.rtt_tolerance * long_rtt / short_rtt, 0.5, 1.0);
    double next = estimate_ * gradient + options_.queue_size;
    next = estimate_ * (1 - options_.smoothing) + next * options_.smoothing;
    estimate_ = std::clamp(next, static_cast<double>(options_.min_limit),
                           static_cast<double>(options_.max_limit));
    return limit();
}

} // namespace tame
