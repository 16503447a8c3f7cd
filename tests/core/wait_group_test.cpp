#include <tame/wait_group.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>

namespace asio = boost::asio;
using tame::error_code;

namespace {

struct wait_result {
    int completions = 0;
    error_code ec;
};

auto record(wait_result& result)
{
    return [&result](error_code ec) {
        ++result.completions;
        result.ec = ec;
    };
}

} // namespace

TEST_CASE("a wait on a zero count completes through the executor, not inside the call",
          "[core][wait_group]")
{
    asio::io_context io;
    tame::wait_group group{io};
    wait_result result;

    group.async_wait(record(result));
    REQUIRE(result.completions == 0);
    io.poll();

    CHECK(result.completions == 1);
    CHECK_FALSE(result.ec);
}

TEST_CASE("a wait completes once the count comes down to zero", "[core][wait_group]")
{
    asio::io_context io;
    tame::wait_group group{io};
    wait_result result;
    group.add(2);
    group.async_wait(record(result));

    group.done();
    io.poll();
    REQUIRE(result.completions == 0);
    group.done();
    io.poll();

    CHECK(result.completions == 1);
    CHECK_FALSE(result.ec);
    CHECK(group.count() == 0);
}

TEST_CASE("every waiter completes when the count reaches zero", "[core][wait_group]")
{
    asio::io_context io;
    tame::wait_group group{io};
    wait_result a;
    wait_result b;
    group.add();
    group.async_wait(record(a));
    group.async_wait(record(b));

    group.done();
    io.poll();

    CHECK(a.completions == 1);
    CHECK(b.completions == 1);
}

TEST_CASE("a cancelled wait completes with operation_aborted and leaves the count alone",
          "[core][wait_group]")
{
    const auto type = GENERATE(asio::cancellation_type::terminal, asio::cancellation_type::partial,
                               asio::cancellation_type::total);
    asio::io_context io;
    tame::wait_group group{io};
    asio::cancellation_signal signal;
    wait_result result;
    group.add();
    group.async_wait(asio::bind_cancellation_slot(signal.slot(), record(result)));

    signal.emit(type);
    io.poll();
    group.done();
    io.poll();

    CHECK(result.completions == 1);
    CHECK(result.ec == asio::error::operation_aborted);
    CHECK(group.count() == 0);
}

TEST_CASE("a waiting async_wait keeps its io_context from running out of work",
          "[core][wait_group]")
{
    asio::io_context io;
    tame::wait_group group{io};
    wait_result result;
    group.add();
    group.async_wait(record(result));

    io.poll();
    REQUIRE_FALSE(io.stopped());
    group.done();
    io.poll();

    CHECK(result.completions == 1);
}

TEST_CASE("destroying the group aborts its waiters", "[core][wait_group]")
{
    asio::io_context io;
    wait_result result;
    {
        tame::wait_group group{io};
        group.add();
        group.async_wait(record(result));
    }

    io.poll();

    CHECK(result.ec == asio::error::operation_aborted);
}

TEST_CASE("coroutines report to a wait_group that a coroutine awaits", "[core][wait_group]")
{
    asio::io_context io;
    tame::wait_group group{io};
    int finished = 0;
    bool joined = false;

    for (int i = 0; i < 10; ++i) {
        group.add();
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                co_await asio::post(io, asio::use_awaitable);
                ++finished;
                group.done();
            },
            asio::detached);
    }
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await group.async_wait(asio::use_awaitable);
            joined = finished == 10;
        },
        asio::detached);
    io.run();

    CHECK(joined);
}

TEST_CASE("done() without a matching add() is caught by an assertion", "[core][wait_group]")
{
#ifdef NDEBUG
    SUCCEED("assertions are compiled out in this build");
#else
    asio::io_context io;
    tame::wait_group group{io};

    // A death test: the misuse runs in a child process, which must abort.
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        group.done();
        ::_exit(0);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);

    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGABRT);
#endif
}
