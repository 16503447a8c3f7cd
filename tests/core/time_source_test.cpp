#include <tame/time_source.hpp>

#include <tame/manual_time.hpp>
#include <tame_test/error_code_record.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using tame::error_code;
using tame_test::error_code_record;

TEST_CASE("a manual wait completes only once the time is advanced to its deadline",
          "[core][time_source]")
{
    asio::io_context io;
    tame::manual_time time;
    error_code_record wait;
    time.async_wait_until(io.get_executor(), time.now() + 5s, wait.handler());
    io.poll();
    time.advance(4s);
    io.poll();
    REQUIRE(wait.completions == 0);

    time.advance(1s);
    io.poll();

    CHECK(wait.completions == 1);
    CHECK_FALSE(wait.ec);
    CHECK(time.waiting() == 0);
}

TEST_CASE("manual waits complete in the order of their deadlines", "[core][time_source]")
{
    asio::io_context io;
    tame::manual_time time;
    std::vector<int> order;
    for (int seconds : {3, 1, 2}) {
        time.async_wait_until(io.get_executor(), time.now() + std::chrono::seconds{seconds},
                              [&order, seconds](error_code) { order.push_back(seconds); });
    }

    time.advance(10s);
    io.poll();

    CHECK(order == std::vector<int>{1, 2, 3});
}

TEST_CASE("a wait for a deadline already passed completes at once, outside the call",
          "[core][time_source]")
{
    asio::io_context io;
    tame::manual_time time;
    error_code_record wait;

    time.async_wait_until(io.get_executor(), time.now(), wait.handler());
    CHECK(wait.completions == 0);
    io.poll();

    CHECK(wait.completions == 1);
    CHECK_FALSE(wait.ec);
}

TEST_CASE("a cancelled manual wait completes with operation_aborted and leaves the queue",
          "[core][time_source]")
{
    const auto type = GENERATE(asio::cancellation_type::terminal, asio::cancellation_type::partial,
                               asio::cancellation_type::total);
    asio::io_context io;
    tame::manual_time time;
    asio::cancellation_signal signal;
    error_code_record wait;
    time.async_wait_until(io.get_executor(), time.now() + 1h,
                          asio::bind_cancellation_slot(signal.slot(), wait.handler()));
    io.poll();

    signal.emit(type);
    io.poll();

    CHECK(wait.completions == 1);
    CHECK(wait.ec == asio::error::operation_aborted);
    CHECK(time.waiting() == 0);
    time.advance(2h);
    io.poll();
    CHECK(wait.completions == 1);
}

TEST_CASE("a manual wait is outstanding work: run() does not return while it waits",
          "[core][time_source]")
{
    asio::io_context io;
    tame::manual_time time;
    error_code_record wait;
    time.async_wait_until(io.get_executor(), time.now() + 1s, wait.handler());

    io.poll();

    CHECK_FALSE(io.stopped());
    time.advance(1s);
    io.run();
    CHECK(wait.completions == 1);
}

TEST_CASE("a manual wait completes on its handler's associated executor", "[core][time_source]")
{
    asio::io_context io;
    asio::io_context other;
    tame::manual_time time;
    error_code_record wait;
    time.async_wait_until(io.get_executor(), time.now() + 1s,
                          asio::bind_executor(other, wait.handler()));

    time.advance(1s);
    io.poll();
    CHECK(wait.completions == 0);
    other.poll();

    CHECK(wait.completions == 1);
}

TEST_CASE("destroying a manual_time completes its waits with operation_aborted",
          "[core][time_source]")
{
    asio::io_context io;
    error_code_record wait;
    {
        tame::manual_time time;
        time.async_wait_until(io.get_executor(), time.now() + 1s, wait.handler());
    }

    io.poll();

    CHECK(wait.completions == 1);
    CHECK(wait.ec == asio::error::operation_aborted);
}

TEST_CASE("the steady time source waits on the steady clock and can be cancelled",
          "[core][time_source]")
{
    asio::io_context io;
    const auto& time = tame::steady_time();
    error_code_record past, cancelled;
    asio::cancellation_signal signal;
    time->async_wait_until(io.get_executor(), time->now() - 1s, past.handler());
    time->async_wait_until(io.get_executor(), time->now() + 1h,
                           asio::bind_cancellation_slot(signal.slot(), cancelled.handler()));
    io.poll();
    CHECK(past.completions == 1);
    CHECK_FALSE(past.ec);

    signal.emit(asio::cancellation_type::terminal);
    io.run();

    CHECK(cancelled.ec == asio::error::operation_aborted);
}

TEST_CASE("a completed steady wait leaves nothing in its handler's slot, so a later emit is safe",
          "[core][time_source]")
{
    asio::io_context io;
    const auto& time = tame::steady_time();
    error_code_record wait;
    asio::cancellation_signal signal;
    time->async_wait_until(io.get_executor(), time->now() - 1s,
                           asio::bind_cancellation_slot(signal.slot(), wait.handler()));
    io.run();
    REQUIRE(wait.completions == 1);

    // The timer is gone: a canceller of its own left in the slot would reach
    // freed memory now, which the asan preset's run of this test reports.
    signal.emit(asio::cancellation_type::terminal);
    CHECK(wait.completions == 1);
}
