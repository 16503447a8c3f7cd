#include <tame/adaptive_limit.hpp>
#include <tame/aimd_limit.hpp>
#include <tame/gradient2_limit.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using tame::error_code;

namespace {

tame::aimd_limit aimd(std::size_t initial)
{
    tame::aimd_options o;
    o.initial_limit = initial;
    o.min_limit = 1;
    return tame::aimd_limit{o};
}

/// What an async_acquire of an adaptive_limit completed with.
struct limit_result {
    int completions = 0;
    error_code ec;
    tame::adaptive_permit permit;
};

auto record(limit_result& r)
{
    return [&r](error_code ec, tame::adaptive_permit p) {
        ++r.completions;
        r.ec = ec;
        r.permit = std::move(p);
    };
}

/// An algorithm that keeps its samples and sets the limit the test says.
struct recording_algorithm final : tame::limit_algorithm {
    std::shared_ptr<std::vector<tame::limit_sample>> samples =
        std::make_shared<std::vector<tame::limit_sample>>();
    std::shared_ptr<std::size_t> next = std::make_shared<std::size_t>(2);
    bool throws = false;

    std::size_t initial_limit() const noexcept override { return 2; }
    std::size_t update(const tame::limit_sample& s) override
    {
        samples->push_back(s);
        if (throws) {
            throw std::runtime_error{"no"};
        }
        return *next;
    }
};

} // namespace

TEST_CASE("an adaptive limit grants permits up to its limit and queues the rest",
          "[core][adaptive_limit]")
{
    asio::io_context io;
    tame::adaptive_limit limit{io, aimd(2)};
    auto a = limit.try_acquire();
    auto b = limit.try_acquire();
    limit_result waiter;

    const bool third = static_cast<bool>(limit.try_acquire());
    limit.async_acquire(record(waiter));
    io.poll();
    const int before_release = waiter.completions;
    a.ignore();
    io.poll();

    CHECK_FALSE(a); // marked: empty
    CHECK(b.in_flight() == 2);
    CHECK_FALSE(third);
    CHECK(before_release == 0);
    CHECK(waiter.completions == 1);
    CHECK_FALSE(waiter.ec);
    CHECK(waiter.permit);
    CHECK(limit.in_flight() == 2);
}

TEST_CASE("a success with the limit in use raises an aimd limit and lets a waiter in",
          "[core][adaptive_limit]")
{
    asio::io_context io;
    tame::adaptive_limit limit{io, aimd(2)};
    auto a = limit.try_acquire();
    auto b = limit.try_acquire(); // in flight: 2
    limit_result waiter;
    limit.async_acquire(record(waiter));

    b.success(); // 2 * 2 >= 2: limit 3, and a held permit came back
    io.poll();

    CHECK(limit.limit() == 3);
    CHECK(limit.semaphore().capacity() == 3);
    CHECK(waiter.permit);
    CHECK(limit.in_flight() == 2);
    CHECK(static_cast<bool>(limit.try_acquire())); // the third of three
}

TEST_CASE("a dropped permit shrinks the limit and new calls wait until fewer are held",
          "[core][adaptive_limit]")
{
    asio::io_context io;
    tame::adaptive_limit limit{io, aimd(10)};
    std::vector<tame::adaptive_permit> held;
    for (int i = 0; i < 10; ++i) {
        held.push_back(limit.try_acquire());
    }

    held[0].dropped(); // 10 * 0.9: 9, with 9 held
    const bool at_nine = static_cast<bool>(limit.try_acquire());
    held[1].ignore(); // 8 held under 9
    auto ninth = limit.try_acquire();

    CHECK(limit.limit() == 9);
    CHECK_FALSE(at_nine);
    CHECK(ninth);
    CHECK(limit.stats().dropped == 1);
    CHECK(limit.stats().ignored == 1);
}

TEST_CASE("an ignored or unmarked permit leaves the limit where it was", "[core][adaptive_limit]")
{
    asio::io_context io;
    recording_algorithm algorithm;
    auto samples = algorithm.samples;
    tame::adaptive_limit limit{io, algorithm};

    limit.try_acquire().ignore();
    {
        auto unmarked = limit.try_acquire();
    }

    CHECK(samples->empty());
    CHECK(limit.stats().ignored == 2);
    CHECK(limit.in_flight() == 0);
}

TEST_CASE("a sample's round-trip time runs from the grant to the mark", "[core][adaptive_limit]")
{
    asio::io_context io;
    auto now = std::make_shared<std::chrono::steady_clock::time_point>();
    recording_algorithm algorithm;
    auto samples = algorithm.samples;
    tame::adaptive_limit limit{io, algorithm, [now] { return *now; }};

    auto first = limit.try_acquire();
    *now += 100ms;
    auto second = limit.try_acquire();
    *now += 150ms;
    first.success();
    second.dropped();

    REQUIRE(samples->size() == 2);
    CHECK((*samples)[0].rtt == 250ms);
    CHECK((*samples)[0].in_flight == 1);
    CHECK_FALSE((*samples)[0].dropped);
    CHECK((*samples)[1].rtt == 150ms);
    CHECK((*samples)[1].in_flight == 2);
    CHECK((*samples)[1].dropped);
}

TEST_CASE("only the first mark of a permit counts", "[core][adaptive_limit]")
{
    asio::io_context io;
    recording_algorithm algorithm;
    auto samples = algorithm.samples;
    tame::adaptive_limit limit{io, algorithm};

    auto p = limit.try_acquire();
    p.success();
    p.dropped();
    p.ignore();

    CHECK(samples->size() == 1);
    CHECK(limit.stats().succeeded == 1);
    CHECK(limit.stats().dropped == 0);
}

TEST_CASE("an algorithm that throws keeps the limit it had", "[core][adaptive_limit]")
{
    asio::io_context io;
    recording_algorithm algorithm;
    algorithm.throws = true;
    *algorithm.next = 7;
    tame::adaptive_limit limit{io, algorithm};

    limit.try_acquire().success();

    CHECK(limit.limit() == 2);
    CHECK(limit.in_flight() == 0);
}

TEST_CASE("a waiting acquire cancelled through its slot leaves no trace", "[core][adaptive_limit]")
{
    asio::io_context io;
    tame::adaptive_limit limit{io, aimd(1)};
    auto held = limit.try_acquire();
    asio::cancellation_signal signal;
    limit_result waiter;

    limit.async_acquire(asio::bind_cancellation_slot(signal.slot(), record(waiter)));
    io.poll();
    signal.emit(asio::cancellation_type::terminal);
    io.poll();
    held.ignore();

    CHECK(waiter.completions == 1);
    CHECK(waiter.ec == asio::error::operation_aborted);
    CHECK_FALSE(waiter.permit);
    CHECK(limit.waiting() == 0);
    CHECK(static_cast<bool>(limit.try_acquire()));
}

TEST_CASE("an acquire completes on its handler's associated executor", "[core][adaptive_limit]")
{
    asio::io_context io;
    tame::adaptive_limit limit{io, aimd(1)};
    auto strand = asio::make_strand(io);
    bool on_strand = false;
    limit_result result;

    limit.async_acquire(asio::bind_executor(strand, [&](error_code ec, tame::adaptive_permit p) {
        on_strand = strand.running_in_this_thread();
        record(result)(ec, std::move(p));
    }));
    const int inside_call = result.completions;
    io.run();

    CHECK(inside_call == 0);
    CHECK(on_strand);
    CHECK(result.permit);
}

TEST_CASE("an acquire takes deferred and use_future tokens", "[core][adaptive_limit]")
{
    asio::io_context io;
    tame::adaptive_limit limit{io, aimd(2)};
    limit_result deferred;

    auto op = limit.async_acquire(asio::deferred);
    std::move(op)(record(deferred));
    auto future = limit.async_acquire(asio::use_future);
    io.run();

    CHECK(deferred.permit);
    CHECK(future.get());
}

TEST_CASE("a coroutine acquires without suspending while the limit has room",
          "[core][adaptive_limit]")
{
    asio::io_context io;
    tame::adaptive_limit limit{io, aimd(1)};
    std::vector<std::size_t> in_flight;

    auto body = [&]() -> asio::awaitable<void> {
        for (int i = 0; i < 3; ++i) {
            auto p = co_await limit.acquire();
            in_flight.push_back(limit.in_flight());
            p.success();
        }
    };
    asio::co_spawn(io, body(), asio::detached);
    io.run();

    CHECK(in_flight == std::vector<std::size_t>{1, 1, 1});
    CHECK(limit.stats().succeeded == 3);
    CHECK(limit.limit() == 3); // 2 * 1 >= 1: 2; 2 * 1 >= 2: 3; 2 * 1 < 3: stays
}

TEST_CASE("destroying a limit aborts its waiters and its permits outlive it",
          "[core][adaptive_limit]")
{
    asio::io_context io;
    limit_result waiter;
    tame::adaptive_permit survivor;
    {
        tame::adaptive_limit limit{io, aimd(1)};
        survivor = limit.try_acquire();
        limit.async_acquire(record(waiter));
        io.poll();
    }
    io.poll();
    survivor.success(); // the state outlived the limit for this permit

    CHECK(waiter.completions == 1);
    CHECK(waiter.ec == asio::error::operation_aborted);
    CHECK_FALSE(survivor);
}

TEST_CASE("a closed limit fails its acquires with closed", "[core][adaptive_limit]")
{
    asio::io_context io;
    tame::adaptive_limit limit{io, aimd(1)};
    limit_result waiter;

    limit.close();
    limit.async_acquire(record(waiter));
    io.poll();

    CHECK(waiter.ec == tame::errc::closed);
}
