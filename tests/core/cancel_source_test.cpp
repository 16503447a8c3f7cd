#include <tame/cancel_source.hpp>

#include <tame/semaphore.hpp>
#include <tame_test/acquire_result.hpp>
#include <tame_test/error_code_record.hpp>
#include <tame_test/probe_operation.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using tame::error_code;
using tame_test::acquire_result;
using tame_test::error_code_record;
using tame_test::record;

TEST_CASE("emit cancels a bound timer wait", "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source source;
    asio::steady_timer timer{io, 1h};
    error_code_record wait;

    timer.async_wait(source.bind(wait.handler()));
    io.poll();
    REQUIRE(wait.completions == 0);

    source.emit();
    io.poll();

    CHECK(wait.completions == 1);
    CHECK(wait.ec == asio::error::operation_aborted);
    CHECK(source.bound() == 0);
}

TEST_CASE("emit reaches every bound operation, of every kind", "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source source;
    std::vector<std::unique_ptr<asio::steady_timer>> timers;
    std::vector<error_code_record> waits(10);
    for (auto& wait : waits) {
        timers.push_back(std::make_unique<asio::steady_timer>(io, 1h));
        timers.back()->async_wait(source.bind(wait.handler()));
    }
    asio::local::stream_protocol::socket reader{io};
    asio::local::stream_protocol::socket silent_peer{io};
    asio::local::connect_pair(reader, silent_peer);
    std::array<char, 16> buffer{};
    std::optional<error_code> read_ec;
    reader.async_read_some(asio::buffer(buffer),
                           source.bind([&](error_code e, std::size_t) { read_ec = e; }));
    io.poll();
    REQUIRE(source.bound() == 11);

    source.emit();
    io.poll();

    for (const auto& wait : waits) {
        CHECK(wait.completions == 1);
        CHECK(wait.ec == asio::error::operation_aborted);
    }
    CHECK(read_ec == asio::error::operation_aborted);
    CHECK(source.bound() == 0);
}

TEST_CASE("an operation bound after emit is cancelled as soon as it starts",
          "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source source;
    source.emit();
    asio::steady_timer timer{io, 1h};
    error_code_record wait;

    timer.async_wait(source.bind(wait.handler()));
    CHECK(wait.completions == 0); // never inside the initiating call
    io.poll();

    CHECK(wait.completions == 1);
    CHECK(wait.ec == asio::error::operation_aborted);
    CHECK(source.bound() == 0);
}

TEST_CASE("an operation that completes before emit is left alone and leaves the source",
          "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source source;
    asio::steady_timer timer{io, 0s};
    error_code_record wait;

    timer.async_wait(source.bind(wait.handler()));
    REQUIRE(source.bound() == 1);
    io.poll();
    REQUIRE(wait.completions == 1);
    CHECK(source.bound() == 0);

    source.emit();
    io.restart();
    io.poll();

    CHECK(wait.completions == 1);
    CHECK(!wait.ec);
}

TEST_CASE("emit delivers the cancellation type it is given", "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source source;
    std::optional<asio::cancellation_type> seen;
    std::optional<error_code> ec;

    tame_test::async_wait_for_cancellation(
        io.get_executor(), seen,
        source.bind(asio::bind_executor(io, [&](error_code e) { ec = e; })));
    source.emit(asio::cancellation_type::partial);
    io.poll();

    CHECK(seen == asio::cancellation_type::partial);
    CHECK(ec == asio::error::operation_aborted);
    CHECK(source.emitted() == asio::cancellation_type::partial);
}

TEST_CASE("cancelled reports whether emit was called, and emitted combines the types",
          "[core][cancel_source]")
{
    tame::cancel_source source;
    CHECK_FALSE(source.cancelled());
    CHECK(source.emitted() == asio::cancellation_type::none);

    source.emit(asio::cancellation_type::partial);
    source.emit(asio::cancellation_type::terminal);

    CHECK(source.cancelled());
    CHECK(source.emitted() ==
          (asio::cancellation_type::partial | asio::cancellation_type::terminal));
}

TEST_CASE("copies of a cancel_source share one signal", "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source source;
    const tame::cancel_source copy = source;
    asio::steady_timer timer{io, 1h};
    error_code_record wait;
    timer.async_wait(copy.bind(wait.handler()));

    source.emit();
    io.poll();

    CHECK(copy.cancelled());
    CHECK(wait.ec == asio::error::operation_aborted);
}

TEST_CASE("a child source is cancelled with its parent", "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source parent;
    tame::cancel_source child = parent.make_child();
    tame::cancel_source grandchild = child.make_child();
    asio::steady_timer timer{io, 1h};
    error_code_record wait;
    timer.async_wait(grandchild.bind(wait.handler()));

    parent.emit();
    io.poll();

    CHECK(child.cancelled());
    CHECK(grandchild.cancelled());
    CHECK(wait.ec == asio::error::operation_aborted);
}

TEST_CASE("a child source can be cancelled without its parent", "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source parent;
    tame::cancel_source child = parent.make_child();
    asio::steady_timer parent_timer{io, 1h};
    asio::steady_timer child_timer{io, 1h};
    error_code_record parent_wait;
    error_code_record child_wait;
    parent_timer.async_wait(parent.bind(parent_wait.handler()));
    child_timer.async_wait(child.bind(child_wait.handler()));

    child.emit();
    io.poll();

    CHECK(child_wait.ec == asio::error::operation_aborted);
    CHECK(parent_wait.completions == 0);
    CHECK_FALSE(parent.cancelled());
    parent_timer.cancel();
    io.poll();
}

TEST_CASE("a child made from a cancelled source starts cancelled", "[core][cancel_source]")
{
    tame::cancel_source parent;
    parent.emit(asio::cancellation_type::partial);

    tame::cancel_source child = parent.make_child();

    CHECK(child.cancelled());
    CHECK(child.emitted() == asio::cancellation_type::partial);
    CHECK(parent.bound() == 0);
}

TEST_CASE("a destroyed child leaves its parent", "[core][cancel_source]")
{
    tame::cancel_source parent;
    {
        tame::cancel_source child = parent.make_child();
        CHECK(parent.bound() == 1);
    }
    CHECK(parent.bound() == 0);
}

TEST_CASE("a coroutine awaiting a bound operation sees operation_aborted", "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source source;
    std::optional<error_code> caught;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            asio::steady_timer timer{co_await asio::this_coro::executor, 1h};
            try {
                co_await timer.async_wait(source.bind(asio::use_awaitable));
                caught = error_code{};
            } catch (const boost::system::system_error& e) {
                caught = e.code();
            }
        },
        asio::detached);
    io.poll();
    REQUIRE_FALSE(caught);

    source.emit();
    io.poll();

    CHECK(caught == asio::error::operation_aborted);
    CHECK(io.stopped());
}

TEST_CASE("a bound co_spawn cancels the whole coroutine", "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source source;
    int steps = 0;
    std::exception_ptr outcome;
    bool finished = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            asio::steady_timer timer{co_await asio::this_coro::executor};
            for (;;) {
                timer.expires_after(1h);
                co_await timer.async_wait(asio::use_awaitable);
                ++steps;
            }
        },
        source.bind([&](std::exception_ptr e) {
            finished = true;
            outcome = e;
        }));
    io.poll();
    REQUIRE_FALSE(finished);

    source.emit();
    io.poll();

    REQUIRE(finished);
    CHECK(steps == 0);
    CHECK_THROWS_AS(std::rethrow_exception(outcome), boost::system::system_error);
    CHECK(source.bound() == 0);
}

TEST_CASE("bind works with deferred", "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source source;
    asio::steady_timer timer{io, 1h};
    error_code_record wait;

    auto op = timer.async_wait(source.bind(asio::deferred));
    CHECK(source.bound() == 0); // deferred: nothing has started yet
    std::move(op)(wait.handler());
    source.emit();
    io.poll();

    CHECK(wait.ec == asio::error::operation_aborted);
}

TEST_CASE("the caller's own cancellation slot still reaches a bound operation",
          "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source source;
    asio::cancellation_signal caller;
    asio::steady_timer timer{io, 1h};
    error_code_record wait;
    timer.async_wait(source.bind(asio::bind_cancellation_slot(caller.slot(), wait.handler())));
    io.poll();

    caller.emit(asio::cancellation_type::terminal);
    io.poll();

    CHECK(wait.ec == asio::error::operation_aborted);
    CHECK_FALSE(source.cancelled());
    CHECK_FALSE(caller.slot().has_handler()); // unhooked when the operation completed
}

TEST_CASE("a bound acquire that emit cancels gives no permit away", "[core][cancel_source]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    tame::cancel_source source;
    tame::permit held = sem.try_acquire();
    acquire_result result;
    sem.async_acquire(source.bind(record(result)));
    io.poll();
    REQUIRE(sem.waiting() == 1);

    source.emit();
    io.poll();

    CHECK(result.ec == asio::error::operation_aborted);
    CHECK_FALSE(result.permit);
    CHECK(sem.waiting() == 0);
    held.release();
    CHECK(sem.available() == 1);
}

TEST_CASE("emit from another thread is delivered on the operation's executor",
          "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source source;
    std::optional<asio::cancellation_type> seen;
    bool on_io_thread = false;
    tame_test::async_wait_for_cancellation(
        io.get_executor(), seen, source.bind(asio::bind_executor(io, [&](error_code) {
            on_io_thread = io.get_executor().running_in_this_thread();
        })));

    std::thread emitter{[&] { source.emit(); }};
    emitter.join();
    CHECK_FALSE(seen); // nothing was emitted on the foreign thread itself
    io.run();

    CHECK(seen == asio::cancellation_type::terminal);
    CHECK(on_io_thread);
}

TEST_CASE("many operations that come and go leave the source empty", "[core][cancel_source]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 4};
    tame::cancel_source source;
    int granted = 0;
    for (int i = 0; i < 100'000; ++i) {
        sem.async_acquire(source.bind([&](error_code ec, tame::permit) { granted += ec ? 0 : 1; }));
        if (i % 1000 == 999) {
            io.poll();
            io.restart();
            REQUIRE(source.bound() == 0);
        }
    }
    io.poll();

    CHECK(granted == 100'000);
    CHECK(source.bound() == 0);
}

TEST_CASE("an operation destroyed uncalled with its io_context leaves the source",
          "[core][cancel_source]")
{
    tame::cancel_source source;
    {
        asio::io_context io;
        auto timer = std::make_unique<asio::steady_timer>(io, 1h);
        timer->async_wait(source.bind([](error_code) {}));
        REQUIRE(source.bound() == 1);
        timer.reset(); // the wait is queued for completion, then dropped with io
    }
    CHECK(source.bound() == 0);
    source.emit(); // nothing left to reach
}
