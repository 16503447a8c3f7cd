// The published arithmetic of Netflix concurrency-limits' AIMDLimit and
// Gradient2Limit, on scripted samples; every expected value is worked out by
// hand from their formulas in the comment beside it.
#include <tame/aimd_limit.hpp>
#include <tame/gradient2_limit.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>

using namespace std::chrono_literals;

namespace {

tame::limit_sample sample(std::chrono::nanoseconds rtt, std::size_t in_flight, bool dropped = false)
{
    return {rtt, in_flight, dropped};
}

tame::aimd_limit aimd(std::size_t initial, std::size_t min = 1, std::size_t max = 200)
{
    tame::aimd_options o;
    o.initial_limit = initial;
    o.min_limit = min;
    o.max_limit = max;
    return tame::aimd_limit{o};
}

tame::gradient2_limit gradient2(std::size_t initial = 20, std::size_t min = 1)
{
    tame::gradient2_options o;
    o.initial_limit = initial;
    o.min_limit = min;
    return tame::gradient2_limit{o};
}

} // namespace

TEST_CASE("aimd adds one for a success while at least half of the limit is in flight",
          "[core][limit]")
{
    auto limit = aimd(20);

    const auto used = limit.update(sample(10ms, 10)); // 2 * 10 >= 20: 21
    const auto idle = limit.update(sample(10ms, 10)); // 2 * 10 < 21: stays

    CHECK(used == 21);
    CHECK(idle == 21);
}

TEST_CASE("aimd multiplies the limit by the backoff ratio on a drop and rounds down",
          "[core][limit]")
{
    auto limit = aimd(21);

    const auto first = limit.update(sample(10ms, 1, true));  // 21 * 0.9 = 18.9: 18
    const auto second = limit.update(sample(10ms, 1, true)); // 18 * 0.9 = 16.2: 16

    CHECK(first == 18);
    CHECK(second == 16);
}

TEST_CASE("aimd counts a call slower than its timeout as a drop", "[core][limit]")
{
    auto limit = aimd(10);

    const auto at_timeout = limit.update(sample(5s, 10)); // not over 5 s: 11
    const auto over = limit.update(sample(5001ms, 10));   // 11 * 0.9 = 9.9: 9

    CHECK(at_timeout == 11);
    CHECK(over == 9);
}

TEST_CASE("aimd stays within its minimum and maximum", "[core][limit]")
{
    auto low = aimd(20, 20, 200); // Netflix's defaults
    auto high = aimd(200, 20, 200);

    CHECK(low.update(sample(1ms, 1, true)) == 20); // 18, held at 20
    CHECK(high.update(sample(1ms, 200)) == 200);   // 201, held at 200
}

TEST_CASE("aimd's defaults are Netflix's", "[core][limit]")
{
    const tame::aimd_options o;

    CHECK(o.initial_limit == 20);
    CHECK(o.min_limit == 20);
    CHECK(o.max_limit == 200);
    CHECK(o.backoff_ratio == 0.9);
    CHECK(o.timeout == 5s);
}

TEST_CASE("gradient2 grows by the smoothed queue size while latency holds", "[core][limit]")
{
    auto limit = gradient2();

    // long = 100 ms; gradient = min(1, 1.5 * 100 / 100) = 1;
    // 20 * 0.8 + (20 * 1 + 4) * 0.2 = 20.8
    const auto first = limit.update(sample(100ms, 20));
    const double after_first = limit.estimate();
    // 20.8 * 0.8 + (20.8 + 4) * 0.2 = 21.6
    const auto second = limit.update(sample(100ms, 20));

    CHECK(after_first == Approx(20.8));
    CHECK(first == 20);
    CHECK(limit.estimate() == Approx(21.6));
    CHECK(second == 21);
}

TEST_CASE("gradient2 shrinks by the gradient of the long-term to the latest RTT", "[core][limit]")
{
    auto limit = gradient2();
    limit.update(sample(100ms, 20));
    limit.update(sample(100ms, 20)); // 21.6

    // long = (100 + 100 + 1000) / 3 = 400 ms; gradient = 1.5 * 400 / 1000 = 0.6;
    // 21.6 * 0.8 + (21.6 * 0.6 + 4) * 0.2 = 17.28 + 3.392 = 20.672
    const auto slow = limit.update(sample(1000ms, 21));

    CHECK(limit.long_rtt() == Approx(400e6));
    CHECK(limit.estimate() == Approx(20.672));
    CHECK(slow == 20);
}

TEST_CASE("gradient2 never takes more than half off in one sample", "[core][limit]")
{
    auto limit = gradient2(100);
    for (int i = 0; i < 9; ++i) {
        limit.update(sample(1s, 1)); // app-limited: only the RTT is learnt
    }

    // long = (9 * 1 + 1000) / 10 = 100.9 s; 1.5 * 100.9 / 1000 = 0.151, held at 0.5:
    // 100 * 0.8 + (100 * 0.5 + 4) * 0.2 = 90.8
    limit.update(sample(1000s, 100));

    CHECK(limit.estimate() == Approx(90.8));
}

TEST_CASE("gradient2 leaves the limit alone while less than half of it is in flight",
          "[core][limit]")
{
    auto limit = gradient2();

    const auto idle = limit.update(sample(5s, 9)); // 9 < 20 / 2

    CHECK(idle == 20);
    CHECK(limit.estimate() == 20.0);
    CHECK(limit.long_rtt() == Approx(5e9)); // the RTT is learnt all the same
}

TEST_CASE("gradient2's long-term RTT is a mean of ten samples then an exponential average",
          "[core][limit]")
{
    auto limit = gradient2();
    for (int i = 0; i < 10; ++i) {
        limit.update(sample(100ms, 1));
    }
    const double warm = limit.long_rtt();

    // 100 * (1 - 2 / 601) + 700 * 2 / 601 = 101.99667 ms
    limit.update(sample(700ms, 1));

    CHECK(warm == Approx(100e6));
    CHECK(limit.long_rtt() == Approx(101.99667e6));
}

TEST_CASE("gradient2 lets the long-term RTT fall faster once it is over twice the latest",
          "[core][limit]")
{
    auto limit = gradient2();
    for (int i = 0; i < 10; ++i) {
        limit.update(sample(100ms, 1));
    }

    // 100 * 599 / 601 + 10 * 2 / 601 = 99.70050 ms; 9.97 > 2: * 0.95 = 94.71547 ms
    limit.update(sample(10ms, 1));

    CHECK(limit.long_rtt() == Approx(94.71547e6));
}

TEST_CASE("gradient2 ignores drops as Netflix's does", "[core][limit]")
{
    auto dropped = gradient2();
    auto served = gradient2();

    dropped.update(sample(100ms, 20, true));
    served.update(sample(100ms, 20, false));

    CHECK(dropped.estimate() == served.estimate());
}

TEST_CASE("gradient2's defaults are Netflix's", "[core][limit]")
{
    const tame::gradient2_options o;

    CHECK(o.initial_limit == 20);
    CHECK(o.min_limit == 20);
    CHECK(o.max_limit == 200);
    CHECK(o.smoothing == 0.2);
    CHECK(o.queue_size == 4);
    CHECK(o.long_window == 600);
    CHECK(o.rtt_tolerance == 1.5);
}

TEST_CASE("limit algorithms refuse limits out of order and ratios out of range", "[core][limit]")
{
    tame::aimd_options zero_min;
    zero_min.min_limit = 0;
    tame::aimd_options ratio;
    ratio.backoff_ratio = 1.0;
    tame::gradient2_options initial_above_max;
    initial_above_max.initial_limit = 300;
    tame::gradient2_options tolerance;
    tolerance.rtt_tolerance = 0.9;

    CHECK_THROWS_AS(tame::aimd_limit{zero_min}, std::invalid_argument);
    CHECK_THROWS_AS(tame::aimd_limit{ratio}, std::invalid_argument);
    CHECK_THROWS_AS(tame::gradient2_limit{initial_above_max}, std::invalid_argument);
    CHECK_THROWS_AS(tame::gradient2_limit{tolerance}, std::invalid_argument);
}
