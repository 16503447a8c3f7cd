#include <tame/deadline.hpp>

#include <tame/manual_time.hpp>
#include <tame/semaphore.hpp>
#include <tame_test/acquire_result.hpp>
#include <tame_test/exception_of.hpp>
#include <tame_test/manual_clock.hpp>
#include <tame_test/probe_operation.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using tame::error_code;
using tame_test::acquire_result;
using tame_test::manual_clock;
using tame_test::record;

namespace {

/// What a coroutine spawned with record_outcome() ended with.
template <class T>
struct outcome {
    int completions = 0;
    std::exception_ptr error;
    std::optional<T> value;

    error_code code() const { return tame_test::code_of(error); }
};

template <class T>
auto record_outcome(outcome<T>& out)
{
    return [&out](std::exception_ptr e, T value) {
        ++out.completions;
        out.error = e;
        if (!e) {
            out.value = std::move(value);
        }
    };
}

auto record_void(outcome<bool>& out)
{
    return [&out](std::exception_ptr e) {
        ++out.completions;
        out.error = e;
        out.value = !e;
    };
}

/// A slow operation: a real timer that would wait an hour.
asio::awaitable<int> slow_answer()
{
    asio::steady_timer timer{co_await asio::this_coro::executor, 1h};
    co_await timer.async_wait(asio::use_awaitable);
    co_return 42;
}

asio::awaitable<int> quick_answer()
{
    co_return 42;
}

} // namespace

TEST_CASE("cancel_after leaves an operation that completes in time alone and drops its timer",
          "[core][deadline]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    acquire_result result;

    sem.async_acquire(tame::cancel_after(1h, record(result)));
    io.poll();

    CHECK(result.completions == 1);
    CHECK(result.permit);
    CHECK(io.stopped()); // the hour-long timer did not stay behind
}

TEST_CASE("cancel_at cancels a timer wait that outlives its deadline", "[core][deadline]")
{
    asio::io_context io;
    asio::steady_timer slow{io, 1h};
    int completions = 0;
    error_code ec;
    slow.async_wait(tame::cancel_at(manual_clock::now() + 5s, [&](error_code e) {
        ++completions;
        ec = e;
    }));
    io.poll();
    REQUIRE(completions == 0);

    manual_clock::advance(5s);
    io.poll();

    CHECK(completions == 1);
    CHECK(ec == asio::error::operation_aborted);
}

TEST_CASE("cancel_at cancels a socket read from a peer that never writes", "[core][deadline]")
{
    asio::io_context io;
    asio::local::stream_protocol::socket reader{io};
    asio::local::stream_protocol::socket silent_peer{io};
    asio::local::connect_pair(reader, silent_peer);
    std::array<char, 16> buffer{};
    std::optional<error_code> ec;

    reader.async_read_some(
        asio::buffer(buffer),
        tame::cancel_at(manual_clock::now() + 1s, [&](error_code e, std::size_t) { ec = e; }));
    io.poll();
    REQUIRE_FALSE(ec);
    manual_clock::advance(1s);
    io.poll();

    REQUIRE(ec);
    CHECK(*ec == asio::error::operation_aborted);
    CHECK(reader.is_open()); // cancelled, not closed
}

TEST_CASE("cancel_at cancels a semaphore acquire that waits too long and leaks no permit",
          "[core][deadline]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    auto held = sem.try_acquire();
    acquire_result result;

    sem.async_acquire(tame::cancel_at(manual_clock::now() + 2s, record(result)));
    io.poll();
    manual_clock::advance(2s);
    io.poll();
    held.release();

    CHECK(result.ec == asio::error::operation_aborted);
    CHECK(sem.waiting() == 0);
    CHECK(sem.available() == 1);
}

TEST_CASE("cancel_at emits the cancellation type it was given", "[core][deadline]")
{
    const auto type = GENERATE(asio::cancellation_type::terminal, asio::cancellation_type::partial,
                               asio::cancellation_type::total);
    asio::io_context io;
    std::optional<asio::cancellation_type> seen;
    std::optional<error_code> ec;

    // The probe names no executor of its own: the handler brings one for the timer.
    tame_test::async_wait_for_cancellation(
        io.get_executor(), seen,
        tame::cancel_at(manual_clock::now() + 1s, type,
                        asio::bind_executor(io, [&](error_code e) { ec = e; })));
    manual_clock::advance(1s);
    io.poll();

    REQUIRE(seen);
    CHECK(*seen == type);
    CHECK(ec == asio::error::operation_aborted);
}

TEST_CASE("cancel_after forwards a cancellation of the caller to the operation", "[core][deadline]")
{
    asio::io_context io;
    asio::cancellation_signal caller;
    std::optional<asio::cancellation_type> seen;
    int completions = 0;

    tame_test::async_wait_for_cancellation(
        io.get_executor(), seen,
        tame::cancel_after(
            1h, asio::bind_cancellation_slot(
                    caller.slot(), asio::bind_executor(io, [&](error_code) { ++completions; }))));
    caller.emit(asio::cancellation_type::partial);
    io.poll();

    CHECK(seen == asio::cancellation_type::partial);
    CHECK(completions == 1);
    CHECK_FALSE(caller.slot().has_handler()); // unhooked on completion
    CHECK(io.stopped());
}

TEST_CASE("cancel_at works with use_awaitable", "[core][deadline]")
{
    asio::io_context io;
    outcome<bool> out;
    error_code ec;

    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            asio::steady_timer slow{co_await asio::this_coro::executor, 1h};
            std::tie(ec) = co_await slow.async_wait(
                tame::cancel_at(manual_clock::now() + 1s, asio::as_tuple(asio::use_awaitable)));
        },
        record_void(out));
    io.poll();
    manual_clock::advance(1s);
    io.poll();

    CHECK(out.completions == 1);
    CHECK(ec == asio::error::operation_aborted);
}

TEST_CASE("cancel_at works with deferred, starting only when launched", "[core][deadline]")
{
    asio::io_context io;
    asio::steady_timer slow{io, 1h};
    std::optional<error_code> ec;

    auto op = slow.async_wait(tame::cancel_at(manual_clock::now() + 1s, asio::deferred));
    io.poll();
    CHECK(io.stopped()); // nothing started yet
    io.restart();
    std::move(op)([&](error_code e) { ec = e; });
    manual_clock::advance(1s);
    io.poll();

    CHECK(ec == asio::error::operation_aborted);
}

TEST_CASE("with_timeout returns the result of an operation that finishes in time",
          "[core][deadline]")
{
    asio::io_context io;
    outcome<int> out;

    asio::co_spawn(io, tame::with_timeout(quick_answer(), 1h), record_outcome(out));
    io.poll();

    CHECK(out.completions == 1);
    CHECK(out.value == 42);
    CHECK(io.stopped()); // no timer or handler left behind
}

TEST_CASE("with_deadline cancels a slow operation and reports timed_out", "[core][deadline]")
{
    asio::io_context io;
    outcome<int> out;

    asio::co_spawn(io, tame::with_deadline(slow_answer(), manual_clock::now() + 3s),
                   record_outcome(out));
    io.poll();
    REQUIRE(out.completions == 0);
    manual_clock::advance(3s);
    io.poll();

    CHECK(out.completions == 1);
    CHECK(out.code() == tame::errc::timed_out);
    CHECK(io.stopped()); // the slow operation's own timer was cancelled too
}

TEST_CASE("with_deadline waits for an operation that ignores cancellation for a while",
          "[core][deadline]")
{
    asio::io_context io;
    outcome<int> out;
    bool finished = false;
    auto stubborn = [&]() -> asio::awaitable<int> {
        // This wait is bound to no slot: cancellation cannot reach it.
        asio::basic_waitable_timer<manual_clock> own{co_await asio::this_coro::executor,
                                                     manual_clock::now() + 5s};
        co_await own.async_wait(
            asio::bind_cancellation_slot(asio::cancellation_slot{}, asio::use_awaitable));
        finished = true;
        co_return 7;
    };

    asio::co_spawn(io, tame::with_deadline(stubborn(), manual_clock::now() + 1s),
                   record_outcome(out));
    io.poll();
    manual_clock::advance(1s);
    io.poll();
    REQUIRE(out.completions == 0); // cancelled, but still running: with_deadline waits
    manual_clock::advance(4s);
    io.poll();

    CHECK(finished);
    CHECK(out.completions == 1);
    CHECK(out.code() == tame::errc::timed_out);
}

TEST_CASE("with_timeout passes on the operation's exception", "[core][deadline]")
{
    asio::io_context io;
    outcome<int> out;
    auto failing = []() -> asio::awaitable<int> {
        throw std::runtime_error{"upstream said no"};
        co_return 0;
    };

    asio::co_spawn(io, tame::with_timeout(failing(), 1h), record_outcome(out));
    io.poll();

    REQUIRE(out.error);
    CHECK_THROWS_WITH(std::rethrow_exception(out.error), "upstream said no");
}

TEST_CASE("with_timeout works for awaitable<void>", "[core][deadline]")
{
    asio::io_context io;
    outcome<bool> in_time;
    outcome<bool> too_late;
    auto nothing = []() -> asio::awaitable<void> { co_return; };
    auto forever = []() -> asio::awaitable<void> {
        asio::steady_timer timer{co_await asio::this_coro::executor, 1h};
        co_await timer.async_wait(asio::use_awaitable);
    };

    asio::co_spawn(io, tame::with_timeout(nothing(), 1h), record_void(in_time));
    asio::co_spawn(io, tame::with_deadline(forever(), manual_clock::now() + 1s),
                   record_void(too_late));
    io.poll();
    manual_clock::advance(1s);
    io.poll();

    CHECK(in_time.value == true);
    CHECK(too_late.code() == tame::errc::timed_out);
}

TEST_CASE("a deadline that has already passed times out without starting the operation",
          "[core][deadline]")
{
    asio::io_context io;
    outcome<int> out;
    bool started = false;
    auto op = [&]() -> asio::awaitable<int> {
        started = true;
        co_return 1;
    };

    asio::co_spawn(io, tame::with_timeout(op(), -1s), record_outcome(out));
    io.poll();

    CHECK(out.code() == tame::errc::timed_out);
    CHECK_FALSE(started);
}

TEST_CASE("the earlier of nested deadlines wins and reports timed_out", "[core][deadline]")
{
    const bool outer_first = GENERATE(true, false);
    asio::io_context io;
    outcome<int> out;
    const auto now = manual_clock::now();
    const auto outer = now + (outer_first ? 2s : 10s);
    const auto inner = now + (outer_first ? 10s : 2s);

    asio::co_spawn(io, tame::with_deadline(tame::with_deadline(slow_answer(), inner), outer),
                   record_outcome(out));
    io.poll();
    manual_clock::advance(2s);
    io.poll();

    CHECK(out.completions == 1);
    CHECK(out.code() == tame::errc::timed_out);
    CHECK(io.stopped());
}

TEST_CASE("cancelling the caller of with_timeout cancels the operation", "[core][deadline]")
{
    asio::io_context io;
    asio::cancellation_signal caller;
    outcome<int> out;

    asio::co_spawn(io, tame::with_timeout(slow_answer(), 1h),
                   asio::bind_cancellation_slot(caller.slot(), record_outcome(out)));
    io.poll();
    caller.emit(asio::cancellation_type::terminal);
    io.poll();

    CHECK(out.completions == 1);
    CHECK(out.code() == asio::error::operation_aborted); // not timed_out: nothing expired
    CHECK(io.stopped());
}

TEST_CASE("an acquire that times out under with_timeout leaves the semaphore whole",
          "[core][deadline]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    auto held = sem.try_acquire();
    outcome<std::size_t> out;
    auto take = [&]() -> asio::awaitable<std::size_t> {
        auto p = co_await sem.acquire();
        co_return p.count();
    };

    asio::co_spawn(io, tame::with_deadline(take(), manual_clock::now() + 1s), record_outcome(out));
    io.poll();
    manual_clock::advance(1s);
    io.poll();
    held.release();

    CHECK(out.code() == tame::errc::timed_out);
    CHECK(sem.waiting() == 0);
    CHECK(sem.available() == 1);
}

TEST_CASE("with_timeout on a time_source cancels the operation once that time has passed",
          "[core][deadline]")
{
    asio::io_context io;
    tame::manual_time time;
    outcome<int> out;

    asio::co_spawn(io, tame::with_timeout(slow_answer(), 3s, time), record_outcome(out));
    io.poll();
    time.advance(2s);
    io.poll();
    REQUIRE(out.completions == 0);
    time.advance(1s);
    io.poll();

    CHECK(out.completions == 1);
    CHECK(out.code() == tame::errc::timed_out);
    CHECK(io.stopped()); // the slow operation's own timer was cancelled and awaited
}

TEST_CASE("with_timeout on a time_source returns the value and takes its wait back",
          "[core][deadline]")
{
    asio::io_context io;
    tame::manual_time time;
    outcome<int> out;

    asio::co_spawn(io, tame::with_timeout(quick_answer(), 3s, time), record_outcome(out));
    io.poll();

    CHECK(out.value == 42);
    CHECK(time.waiting() == 0);
    CHECK(io.stopped());
}

TEST_CASE("with_timeout on a time_source with no time at all fails without starting the "
          "operation",
          "[core][deadline]")
{
    asio::io_context io;
    tame::manual_time time;
    bool started = false;
    auto op = [&]() -> asio::awaitable<int> {
        started = true;
        co_return 1;
    };
    outcome<int> out;

    asio::co_spawn(io, tame::with_timeout(op(), 0s, time), record_outcome(out));
    io.run();

    CHECK(out.code() == tame::errc::timed_out);
    CHECK_FALSE(started);
}
