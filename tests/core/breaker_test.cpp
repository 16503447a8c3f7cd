#include <tame/breaker.hpp>
#include <tame/with_breaker.hpp>

#include <tame_test/exception_of.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <deque>
#include <optional>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

/// A breaker on a clock the test moves, deciding drops by draws it scripts.
struct scripted_breaker {
    std::chrono::steady_clock::time_point now{};
    std::deque<double> draws;
    tame::breaker breaker{options()};

    tame::breaker_options options()
    {
        tame::breaker_options o;
        o.clock = [this] { return now; };
        o.random = [this] {
            const double d = draws.empty() ? 0.999 : draws.front();
            if (!draws.empty()) {
                draws.pop_front();
            }
            return d;
        };
        return o;
    }

    void succeed(int n)
    {
        for (int i = 0; i < n; ++i) {
            breaker.allow().success();
        }
    }
    void fail(int n)
    {
        for (int i = 0; i < n; ++i) {
            breaker.allow().failure();
        }
    }
};

} // namespace

TEST_CASE("a breaker drops nothing while its failures stay within the protection count",
          "[core][breaker]")
{
    scripted_breaker b;

    b.fail(5); // (5 - 5 - 0) / 6 = 0
    const double within = b.breaker.drop_probability();
    b.fail(1); // (6 - 5 - 0) / 7

    CHECK(within == 0);
    CHECK(b.breaker.drop_probability() == Approx(1.0 / 7));
}

TEST_CASE("the drop probability is max(0, (requests - protection - k accepts) / (requests + 1))",
          "[core][breaker]")
{
    scripted_breaker b;

    b.succeed(10);
    const double healthy = b.breaker.drop_probability(); // (10 - 5 - 15) / 11 < 0
    b.fail(20);                                          // (30 - 5 - 15) / 31

    CHECK(healthy == 0);
    CHECK(b.breaker.drop_probability() == Approx(10.0 / 31));
    CHECK(b.breaker.state() == tame::breaker_state::open);
}

TEST_CASE("a call is dropped when its draw falls below the probability, and counts as a request",
          "[core][breaker]")
{
    scripted_breaker b;
    b.succeed(10);
    b.fail(20); // p = 10 / 31 = 0.3226
    b.draws = {0.30, 0.40};

    auto dropped = b.breaker.allow(); // 0.30 < 0.3226: dropped; requests 31
    const double after_drop = b.breaker.drop_probability();
    auto passed = b.breaker.allow(); // 0.40 >= (31 - 5 - 15) / 32 = 0.34375: goes through

    CHECK_FALSE(dropped);
    CHECK(after_drop == Approx(11.0 / 32));
    CHECK(passed);
    CHECK(b.breaker.stats().dropped == 1);
}

TEST_CASE("outcomes older than the window are forgotten a bucket at a time", "[core][breaker]")
{
    scripted_breaker b; // 10 s in 40 buckets of 250 ms
    b.fail(10);         // at 0 s
    b.now += 5s;
    b.fail(10); // at 5 s: (20 - 5) / 21

    const double both = b.breaker.drop_probability();
    b.now += 5s + 250ms; // the buckets of 0 s have left the window: (10 - 5) / 11
    const double second_only = b.breaker.drop_probability();
    b.now += 5s; // all gone
    const double none = b.breaker.drop_probability();

    CHECK(both == Approx(15.0 / 21));
    CHECK(second_only == Approx(5.0 / 11));
    CHECK(none == 0);
}

TEST_CASE("after a quiet second an open breaker lets one probe through and reads half-open",
          "[core][breaker]")
{
    scripted_breaker b;
    b.fail(20); // p = 15 / 21
    b.draws = {0.0, 0.0};
    auto dropped = b.breaker.allow(); // a pass happened at 0 s (the last failure): dropped
    b.now += 1001ms;

    auto probe = b.breaker.allow();                    // quiet for more than a second: a probe
    const bool let_through = static_cast<bool>(probe); // a guard is empty once marked
    const auto while_probing = b.breaker.state();
    auto next = b.breaker.allow(); // the probe is the one call of that quiet period
    probe.success();

    CHECK_FALSE(dropped);
    CHECK(let_through);
    CHECK(probe.is_probe());
    CHECK(while_probing == tame::breaker_state::half_open);
    CHECK_FALSE(next);
    CHECK(b.breaker.state() == tame::breaker_state::open);
}

TEST_CASE("a breaker closes again as the upstream's successes come back", "[core][breaker]")
{
    scripted_breaker b;
    b.fail(20);
    REQUIRE(b.breaker.state() == tame::breaker_state::open);

    // 20 failures and 10 successes: (30 - 5 - 15) / 31 > 0; 20 more: (50 - 5 - 45) / 51 = 0.
    b.draws = std::deque<double>(100, 0.999);
    b.succeed(30);

    CHECK(b.breaker.drop_probability() == 0);
    CHECK(b.breaker.state() == tame::breaker_state::closed);
}

TEST_CASE("an unmarked guard counts as a failure and an ignored one as nothing", "[core][breaker]")
{
    scripted_breaker b;

    {
        auto unmarked = b.breaker.allow();
    }
    b.breaker.allow().ignore();
    auto twice = b.breaker.allow();
    twice.success();
    twice.failure(); // only the first mark counts
    const auto s = b.breaker.stats();

    CHECK(s.failed == 1);
    CHECK(s.accepted == 1);
    CHECK(s.window_requests == 2);
    CHECK(s.window_accepts == 1);
}

TEST_CASE("with_breaker refuses a dropped call with breaker_open without starting it",
          "[core][breaker]")
{
    scripted_breaker b;
    b.fail(20);
    b.draws = {0.0};
    b.now += 1ms; // not quiet long enough for a probe
    asio::io_context io;
    bool started = false;
    std::exception_ptr thrown;

    auto call = [&]() -> asio::awaitable<int> {
        started = true;
        co_return 1;
    };
    asio::co_spawn(io, tame::with_breaker(b.breaker, call()),
                   [&](std::exception_ptr e, int) { thrown = e; });
    io.run();

    CHECK_FALSE(started);
    CHECK(tame_test::code_of(thrown) == tame::errc::breaker_open);
}

TEST_CASE("with_breaker counts a return as a success, a throw as a failure and a cancellation as "
          "nothing",
          "[core][breaker]")
{
    scripted_breaker b;
    asio::io_context io;
    auto run = [&](asio::awaitable<void> op) {
        asio::co_spawn(io, tame::with_breaker(b.breaker, std::move(op)), [](std::exception_ptr) {});
        io.restart();
        io.run();
    };

    run([]() -> asio::awaitable<void> { co_return; }());
    run([]() -> asio::awaitable<void> {
        throw std::runtime_error{"upstream failed"};
        co_return;
    }());
    run([]() -> asio::awaitable<void> {
        throw boost::system::system_error{asio::error::operation_aborted};
        co_return;
    }());
    const auto s = b.breaker.stats();

    CHECK(s.accepted == 1);
    CHECK(s.failed == 1);
    CHECK(s.window_requests == 2);
}
