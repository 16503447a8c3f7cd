// go-zero's adaptive shedder (core/load/adaptiveshedder.go), step for step:
// the same windows, the same Little's-law estimate, the same cool-off.
#include <tame/adaptive_shedder.hpp>

#include "cpu_meter.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace tame {
namespace {

constexpr double flying_beta = 0.9;        // the in-flight count's moving average
constexpr double default_min_rt_ms = 1000; // an empty window: large, so nothing is shed
constexpr double overload_factor_floor = 0.1;
constexpr std::int64_t never = std::numeric_limits<std::int64_t>::min();

std::int64_t ticks(std::chrono::steady_clock::time_point t) noexcept
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

} // namespace

/// Sums and counts per bucket of a rolling window; a reduction reads the
/// buckets before the current one (its data is partial), as go-zero's
/// IgnoreCurrentBucket window does.
class adaptive_shedder::rolling_window {
  public:
    rolling_window(std::size_t buckets, std::chrono::steady_clock::duration width)
        : buckets_(buckets), width_{width}
    {
    }

    void add(time_point now, std::int64_t value)
    {
        const auto t = tick(now);
        std::lock_guard lock{mutex_};
        auto& b = buckets_[index(t)];
        if (b.tick != t) {
            b = bucket{t, 0, 0};
        }
        b.sum += value;
        ++b.count;
    }

    template <class F>
    void reduce(time_point now, F&& f) const
    {
        const auto t = tick(now);
        const auto n = static_cast<std::int64_t>(buckets_.size());
        std::lock_guard lock{mutex_};
        for (std::int64_t back = 1; back < n; ++back) {
            const auto& b = buckets_[index(t - back)];
            if (b.tick == t - back) {
                f(b.sum, b.count);
            }
        }
    }

  private:
    struct bucket {
        std::int64_t tick = never;
        std::int64_t sum = 0;
        std::int64_t count = 0;
    };

    std::int64_t tick(time_point now) const noexcept { return now.time_since_epoch() / width_; }
    std::size_t index(std::int64_t tick) const noexcept
    {
        const auto n = static_cast<std::int64_t>(buckets_.size());
        return static_cast<std::size_t>((tick % n + n) % n);
    }

    mutable std::mutex mutex_;
    std::vector<bucket> buckets_;
    std::chrono::steady_clock::duration width_;
};

adaptive_shedder::ticket::ticket(ticket&& other) noexcept
    : owner_{std::exchange(other.owner_, nullptr)}, start_{other.start_}
{
}

adaptive_shedder::ticket& adaptive_shedder::ticket::operator=(ticket&& other) noexcept
{
    if (this != &other) {
        fail();
        owner_ = std::exchange(other.owner_, nullptr);
        start_ = other.start_;
    }
    return *this;
}

void adaptive_shedder::ticket::pass() noexcept
{
    if (auto* owner = std::exchange(owner_, nullptr)) {
        owner->leave(true, start_);
    }
}

void adaptive_shedder::ticket::fail() noexcept
{
    if (auto* owner = std::exchange(owner_, nullptr)) {
        owner->leave(false, start_);
    }
}

adaptive_shedder::adaptive_shedder(shedder_options options)
    : options_{std::move(options)}, overload_time_{never}
{
    options_.buckets = std::max<std::size_t>(options_.buckets, 2);
    const auto width = std::max<std::chrono::steady_clock::duration>(
        options_.window / static_cast<std::int64_t>(options_.buckets),
        std::chrono::milliseconds{1});
    // go-zero's windowScale: buckets per second, per 1000 ms of response time.
    buckets_per_ms_ = std::chrono::duration<double>(std::chrono::seconds{1}) /
                      std::chrono::duration<double>(width) / 1000.0;
    passes_ = std::make_unique<rolling_window>(options_.buckets, width);
    response_times_ = std::make_unique<rolling_window>(options_.buckets, width);
    if (!options_.cpu_usage) {
        meter_ = std::make_unique<detail::cpu_meter>(options_.cores);
    }
}

adaptive_shedder::~adaptive_shedder() = default;

double adaptive_shedder::usable_cores()
{
    return detail::cpu_meter::usable_cores();
}

adaptive_shedder::time_point adaptive_shedder::now() const
{
    return options_.clock ? options_.clock() : std::chrono::steady_clock::now();
}

unsigned adaptive_shedder::cpu() const
{
    return options_.cpu_usage ? options_.cpu_usage() : meter_->usage();
}

adaptive_shedder::ticket adaptive_shedder::allow()
{
    const auto t = now();
    if (should_drop(t)) {
        dropped_recently_.store(true, std::memory_order_relaxed);
        shed_.fetch_add(1, std::memory_order_relaxed);
        return {};
    }
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    return ticket{this, t};
}

bool adaptive_shedder::should_drop(time_point t)
{
    const unsigned usage = cpu();
    const bool overloaded = usage >= options_.cpu_threshold;
    if (overloaded) {
        overload_time_.store(ticks(t), std::memory_order_relaxed);
    }
    if (!overloaded && !still_hot(t)) {
        return false;
    }
    // Over the requests in flight the server has shown it carries, scaled down
    // as the CPU nears 100%, but to no less than a tenth.
    const double threshold = static_cast<double>(options_.cpu_threshold);
    const double factor = std::clamp((1000.0 - usage) / std::max(1000.0 - threshold, 1.0),
                                     overload_factor_floor, 1.0);
    const double allowed = max_flight(t) * factor;
    double average = 0;
    {
        std::lock_guard lock{average_mutex_};
        average = average_in_flight_;
    }
    return average > allowed &&
           static_cast<double>(in_flight_.load(std::memory_order_relaxed)) > allowed;
}

bool adaptive_shedder::still_hot(time_point t)
{
    if (!dropped_recently_.load(std::memory_order_relaxed)) {
        return false;
    }
    const auto overload = overload_time_.load(std::memory_order_relaxed);
    if (overload == never) {
        return false;
    }
    if (ticks(t) - overload <
        std::chrono::duration_cast<std::chrono::nanoseconds>(options_.cool_off).count()) {
        return true;
    }
    dropped_recently_.store(false, std::memory_order_relaxed);
    return false;
}

std::int64_t adaptive_shedder::max_pass(time_point t) const
{
    std::int64_t result = 1;
    passes_->reduce(t, [&](std::int64_t sum, std::int64_t) { result = std::max(result, sum); });
    return result;
}

double adaptive_shedder::min_rt_ms(time_point t) const
{
    double result = default_min_rt_ms;
    response_times_->reduce(t, [&](std::int64_t sum, std::int64_t count) {
        if (count > 0) {
            result =
                std::min(result, std::round(static_cast<double>(sum) / static_cast<double>(count)));
        }
    });
    return result;
}

double adaptive_shedder::max_flight(time_point t) const
{
    // Little's law: (most passes per second) x (lowest response time).
    return std::max(1.0, static_cast<double>(max_pass(t)) * min_rt_ms(t) * buckets_per_ms_);
}

void adaptive_shedder::leave(bool passed, time_point start) noexcept
{
    const auto flying = in_flight_.fetch_sub(1, std::memory_order_relaxed) - 1;
    {
        // The average moves when a request ends, so it lags the count: a
        // sudden burst is let in, a sudden drain keeps shedding a little longer.
        std::lock_guard lock{average_mutex_};
        average_in_flight_ =
            average_in_flight_ * flying_beta + static_cast<double>(flying) * (1 - flying_beta);
    }
    if (!passed) {
        return;
    }
    try {
        const auto t = now();
        const auto rt_ms = std::chrono::duration<double, std::milli>(t - start).count();
        response_times_->add(t, static_cast<std::int64_t>(std::ceil(rt_ms)));
        passes_->add(t, 1);
    } catch (...) {
        // A test's clock that throws: the pass is not counted.
    }
}

shedder_stats adaptive_shedder::stats() const
{
    const auto t = now();
    shedder_stats s;
    s.cpu_usage = cpu();
    s.in_flight = in_flight_.load(std::memory_order_relaxed);
    {
        std::lock_guard lock{average_mutex_};
        s.average_in_flight = average_in_flight_;
    }
    s.max_pass = max_pass(t);
    s.min_rt_ms = min_rt_ms(t);
    s.max_flight = max_flight(t);
    s.shed = shed_.load(std::memory_order_relaxed);
    return s;
}

} // namespace tame
