// go-zero's adaptive shedder on a clock and a CPU reading the test sets; the
// expected values are worked out in the comments from its formulas. Windows of
// 5 s in 50 buckets: 100 ms each, so max_flight = max_pass * min_rt_ms / 100.
#include <tame/adaptive_shedder.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct scripted_shedder {
    std::chrono::steady_clock::time_point now{};
    unsigned cpu = 0;
    tame::adaptive_shedder shedder{options()};
    std::vector<tame::adaptive_shedder::ticket> held;

    tame::shedder_options options()
    {
        tame::shedder_options o;
        o.clock = [this] { return now; };
        o.cpu_usage = [this] { return cpu; };
        return o;
    }

    /// `n` requests that each take `rt` and pass, all within the current bucket.
    void serve(int n, std::chrono::milliseconds rt)
    {
        std::vector<tame::adaptive_shedder::ticket> tickets;
        for (int i = 0; i < n; ++i) {
            tickets.push_back(shedder.allow());
        }
        now += rt;
        for (auto& t : tickets) {
            t.pass();
        }
    }

    /// Keeps `n` requests in flight, and lets `settle` more start and fail so
    /// that the moving average of the in-flight count nears `n`.
    void hold(int n, int settle = 30)
    {
        for (int i = 0; i < n; ++i) {
            held.push_back(shedder.allow());
        }
        for (int i = 0; i < settle; ++i) {
            shedder.allow().fail();
        }
    }
};

/// Passes 50 requests of 20 ms in the bucket of [0, 100 ms), then moves to the
/// next bucket: max_flight = 50 * 20 / 100 = 10.
void learn_ten_in_flight(scripted_shedder& s)
{
    s.serve(50, 20ms);
    s.now = std::chrono::steady_clock::time_point{150ms};
}

} // namespace

TEST_CASE("the shedder's defaults are go-zero's", "[core][shedder]")
{
    const tame::shedder_options o;

    CHECK(o.cpu_threshold == 900);
    CHECK(o.window == 5s);
    CHECK(o.buckets == 50);
    CHECK(o.cool_off == 1s);
}

TEST_CASE("an empty window allows ten requests in flight", "[core][shedder]")
{
    scripted_shedder s;

    const auto stats = s.shedder.stats(); // max_pass 1, min_rt 1000 ms: 1 * 1000 / 100

    CHECK(stats.max_pass == 1);
    CHECK(stats.min_rt_ms == 1000);
    CHECK(stats.max_flight == Approx(10));
}

TEST_CASE("max_flight is the most passes of a past bucket times the lowest mean response time",
          "[core][shedder]")
{
    scripted_shedder s;
    s.serve(50, 20ms); // bucket 0: 50 passes of 20 ms
    s.now = std::chrono::steady_clock::time_point{100ms};
    s.serve(30, 10ms); // bucket 1: 30 of 10 ms
    s.now = std::chrono::steady_clock::time_point{200ms};
    s.serve(100, 5ms); // bucket 2, the current one: not read

    const auto stats = s.shedder.stats(); // 50 * 10 / 100

    CHECK(stats.max_pass == 50);
    CHECK(stats.min_rt_ms == 10);
    CHECK(stats.max_flight == Approx(5));
}

TEST_CASE("a busy CPU with more in flight than the server has carried sheds requests",
          "[core][shedder]")
{
    scripted_shedder s;
    learn_ten_in_flight(s);
    s.hold(20); // average 20 * (1 - 0.9^30) = 19.2, and 20 in flight: both over 10

    s.cpu = 900;
    auto refused = s.shedder.allow();

    CHECK(s.shedder.stats().average_in_flight > 19);
    CHECK_FALSE(refused);
    CHECK(s.shedder.stats().shed == 1);
}

TEST_CASE("a busy CPU sheds nothing while the requests in flight stay within max_flight",
          "[core][shedder]")
{
    scripted_shedder s;
    learn_ten_in_flight(s);
    s.hold(9);

    s.cpu = 900;

    CHECK(s.shedder.allow());
}

TEST_CASE("many requests in flight shed nothing while the CPU is under its threshold",
          "[core][shedder]")
{
    scripted_shedder s;
    learn_ten_in_flight(s);
    s.hold(20);

    s.cpu = 899;

    CHECK(s.shedder.allow());
}

TEST_CASE("the in-flight allowance shrinks as the CPU nears full to no less than a tenth",
          "[core][shedder]")
{
    scripted_shedder s;
    learn_ten_in_flight(s);
    s.hold(8); // average 7.66, 8 in flight

    s.cpu = 900; // factor (1000 - 900) / 100 = 1: allowed 10
    const bool at_threshold = static_cast<bool>(s.shedder.allow());
    s.cpu = 950; // factor 0.5: allowed 5
    const bool at_half = static_cast<bool>(s.shedder.allow());
    s.held.clear();
    s.cpu = 0;
    s.hold(2, 60); // average ~2, 2 in flight
    s.cpu = 1000;  // factor 0, held at 0.1: allowed 1
    const bool at_full = static_cast<bool>(s.shedder.allow());

    CHECK(at_threshold);
    CHECK_FALSE(at_half);
    CHECK_FALSE(at_full);
}

TEST_CASE("after a shed the server stays hot for the cool-off though the CPU has fallen",
          "[core][shedder]")
{
    scripted_shedder s;
    learn_ten_in_flight(s);
    s.hold(20);
    s.cpu = 950;
    REQUIRE_FALSE(s.shedder.allow()); // overloaded at 150 ms

    s.cpu = 100;
    s.now += 999ms;
    const bool within = static_cast<bool>(s.shedder.allow());
    s.now += 2ms; // 1001 ms after the CPU was last over
    const bool after = static_cast<bool>(s.shedder.allow());

    CHECK_FALSE(within);
    CHECK(after);
}

TEST_CASE("a CPU that falls before anything was shed sheds nothing", "[core][shedder]")
{
    scripted_shedder s;
    learn_ten_in_flight(s);
    s.cpu = 950;
    auto seen_hot = s.shedder.allow(); // one in flight: allowed, nothing shed
    s.cpu = 100;
    s.hold(20);

    auto later = s.shedder.allow(); // within a second of the CPU over, but nothing was shed

    CHECK(seen_hot);
    CHECK(later);
    CHECK(s.shedder.stats().shed == 0);
}

TEST_CASE("a failed or unmarked ticket leaves the in-flight count without a pass",
          "[core][shedder]")
{
    scripted_shedder s;

    s.shedder.allow().fail();
    {
        auto unmarked = s.shedder.allow();
    }
    s.now += 100ms;

    CHECK(s.shedder.stats().in_flight == 0);
    CHECK(s.shedder.stats().max_pass == 1); // nothing passed
}

TEST_CASE("the shedder's own CPU reading is in thousandths", "[core][shedder]")
{
    tame::adaptive_shedder shedder;

    CHECK(shedder.stats().cpu_usage <= 1000);
    CHECK(shedder.allow());
}
