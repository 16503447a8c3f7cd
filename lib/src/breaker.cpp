#include <tame/breaker.hpp>

#include <algorithm>
#include <random>
#include <utility>

namespace tame {
namespace {

constexpr int tick_bits = 24;
constexpr int count_bits = 20;
constexpr std::uint64_t tick_mask = (std::uint64_t{1} << tick_bits) - 1;
constexpr std::uint64_t count_max = (std::uint64_t{1} << count_bits) - 1;

constexpr std::uint64_t pack(std::uint64_t tick, std::uint64_t accepts, std::uint64_t requests)
{
    return ((tick & tick_mask) << (2 * count_bits)) | (accepts << count_bits) | requests;
}
constexpr std::uint64_t tick_of(std::uint64_t word)
{
    return word >> (2 * count_bits);
}
constexpr std::uint64_t accepts_of(std::uint64_t word)
{
    return (word >> count_bits) & count_max;
}
constexpr std::uint64_t requests_of(std::uint64_t word)
{
    return word & count_max;
}

/// xorshift64*: fast, per thread, good enough to decide drops.
double thread_random()
{
    thread_local std::uint64_t state = [] {
        std::random_device device;
        return (static_cast<std::uint64_t>(device()) << 32) | device() | 1;
    }();
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return static_cast<double>((state * 0x2545F4914F6CDD1DULL) >> 11) * 0x1.0p-53;
}

std::chrono::steady_clock::time_point steady_now()
{
    return std::chrono::steady_clock::now();
}

} // namespace

breaker::guard::guard(guard&& other) noexcept
    : owner_{std::exchange(other.owner_, nullptr)}, probe_{std::exchange(other.probe_, false)}
{
}

breaker::guard& breaker::guard::operator=(guard&& other) noexcept
{
    if (this != &other) {
        failure();
        owner_ = std::exchange(other.owner_, nullptr);
        probe_ = std::exchange(other.probe_, false);
    }
    return *this;
}

void breaker::guard::mark(outcome o) noexcept
{
    auto* owner = std::exchange(owner_, nullptr);
    if (owner == nullptr) {
        return;
    }
    if (probe_) {
        owner->probes_.fetch_sub(1, std::memory_order_relaxed);
    }
    switch (o) {
    case outcome::accepted:
        owner->accepted_.fetch_add(1, std::memory_order_relaxed);
        owner->record(true);
        break;
    case outcome::failed:
        owner->failed_.fetch_add(1, std::memory_order_relaxed);
        owner->record(false);
        break;
    case outcome::ignored:
        break;
    }
}

breaker::breaker(breaker_options options) : options_{std::move(options)}
{
    options_.buckets = std::max<std::size_t>(options_.buckets, 1);
    if (!options_.clock) {
        options_.clock = steady_now;
    }
    bucket_width_ = std::max<std::chrono::steady_clock::duration>(
        options_.window / static_cast<std::int64_t>(options_.buckets),
        std::chrono::milliseconds{1});
    buckets_ = std::make_unique<std::atomic<std::uint64_t>[]>(options_.buckets);
    for (std::size_t i = 0; i < options_.buckets; ++i) {
        // A tick no time maps to soon: every bucket starts empty.
        buckets_[i].store(pack(tick_mask, 0, 0), std::memory_order_relaxed);
    }
}

std::int64_t breaker::tick(std::chrono::steady_clock::time_point now) const noexcept
{
    return now.time_since_epoch() / bucket_width_;
}

void breaker::record(bool accepted) noexcept
{
    const auto t = tick(options_.clock());
    auto& bucket = buckets_[static_cast<std::size_t>(t) % options_.buckets];
    const auto want = static_cast<std::uint64_t>(t) & tick_mask;
    auto word = bucket.load(std::memory_order_relaxed);
    for (;;) {
        // A bucket last used for an older tick starts again from zero.
        const bool current = tick_of(word) == want;
        const auto accepts = (current ? accepts_of(word) : 0) + (accepted ? 1 : 0);
        const auto requests = (current ? requests_of(word) : 0) + 1;
        const auto next = pack(want, std::min(accepts, count_max), std::min(requests, count_max));
        if (bucket.compare_exchange_weak(word, next, std::memory_order_relaxed)) {
            return;
        }
    }
}

breaker::window_counts breaker::counts(std::int64_t t) const noexcept
{
    // The buckets of the last `buckets` ticks, newest first: one division for
    // the start, then a walk back (a division per bucket cost more than the
    // rest of allow()).
    window_counts c;
    const auto n = options_.buckets;
    std::size_t at = static_cast<std::size_t>(t) % n;
    auto want = static_cast<std::uint64_t>(t);
    for (std::size_t back = 0; back < n && want <= static_cast<std::uint64_t>(t); ++back) {
        const auto word = buckets_[at].load(std::memory_order_relaxed);
        if (tick_of(word) == (want & tick_mask)) {
            c.requests += requests_of(word);
            c.accepts += accepts_of(word);
        }
        at = at == 0 ? n - 1 : at - 1;
        --want; // wraps past 0 for the first ticks of a clock: the loop ends
    }
    return c;
}

double breaker::probability(const window_counts& c) const noexcept
{
    const double requests = static_cast<double>(c.requests);
    const double p = (requests - static_cast<double>(options_.protection) -
                      options_.k * static_cast<double>(c.accepts)) /
                     (requests + 1);
    return std::max(0.0, p);
}

double breaker::draw() const
{
    return options_.random ? options_.random() : thread_random();
}

breaker::guard breaker::allow() noexcept
{
    const auto now = options_.clock();
    const double p = probability(counts(tick(now)));
    const auto now_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
    if (p <= 0) {
        last_pass_.store(now_ns, std::memory_order_relaxed);
        return guard{this, false};
    }
    // Dropping: but after a quiet period, one call goes through as a probe.
    auto last = last_pass_.load(std::memory_order_relaxed);
    const auto quiet =
        std::chrono::duration_cast<std::chrono::nanoseconds>(options_.force_pass_after).count();
    if (now_ns - last > quiet &&
        last_pass_.compare_exchange_strong(last, now_ns, std::memory_order_relaxed)) {
        probes_.fetch_add(1, std::memory_order_relaxed);
        return guard{this, true};
    }
    if (draw() < p) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        record(false); // a request the caller attempted, not accepted
        return guard{};
    }
    last_pass_.store(now_ns, std::memory_order_relaxed);
    return guard{this, false};
}

double breaker::drop_probability() const noexcept
{
    return probability(counts(tick(options_.clock())));
}

breaker_state breaker::state() const noexcept
{
    if (drop_probability() <= 0) {
        return breaker_state::closed;
    }
    return probes_.load(std::memory_order_relaxed) > 0 ? breaker_state::half_open
                                                       : breaker_state::open;
}

breaker_stats breaker::stats() const noexcept
{
    breaker_stats s;
    s.accepted = accepted_.load(std::memory_order_relaxed);
    s.failed = failed_.load(std::memory_order_relaxed);
    s.dropped = dropped_.load(std::memory_order_relaxed);
    const auto c = counts(tick(options_.clock()));
    s.window_requests = c.requests;
    s.window_accepts = c.accepts;
    s.drop_probability = probability(c);
    s.state = s.drop_probability <= 0
                  ? breaker_state::closed
                  : (probes_.load(std::memory_order_relaxed) > 0 ? breaker_state::half_open
                                                                 : breaker_state::open);
    return s;
}

} // namespace tame
