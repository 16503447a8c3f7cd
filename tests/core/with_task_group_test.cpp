#include <tame/with_task_group.hpp>

#include <tame/cancel_source.hpp>
#include <tame_test/exception_of.hpp>
#include <tame_test/gate.hpp>
#include <tame_test/sleeper.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using tame::error_code;
using tame_test::gate;
using tame_test::sleeper;

namespace {

/// How a coroutine run by run() ended: not yet, with a value, or with an exception.
template <class T>
struct outcome {
    bool done = false;
    std::exception_ptr failure;
    std::optional<T> value;

    std::string message() const { return tame_test::message_of(failure); }

    error_code code() const { return tame_test::code_of(failure); }
};

/// Spawns `op` on `io`, recording its end in `out`; `slot` cancels it.
template <class T>
void run(asio::io_context& io, asio::awaitable<T> op, outcome<T>& out,
         asio::cancellation_slot slot = {})
{
    asio::co_spawn(io, std::move(op),
                   asio::bind_cancellation_slot(slot, [&out](std::exception_ptr e, T value) {
                       out.done = true;
                       out.failure = e;
                       if (!e) {
                           out.value = std::move(value);
                       }
                   }));
}

void run(asio::io_context& io, asio::awaitable<void> op, outcome<bool>& out,
         asio::cancellation_slot slot = {})
{
    asio::co_spawn(io, std::move(op),
                   asio::bind_cancellation_slot(slot, [&out](std::exception_ptr e) {
                       out.done = true;
                       out.failure = e;
                       out.value = !e;
                   }));
}

} // namespace

TEST_CASE("with_task_group returns only once every task the body spawned has ended",
          "[core][with_task_group]")
{
    asio::io_context io;
    gate door{io};
    int ended = 0;
    auto body = [&](tame::task_group& group) -> asio::awaitable<void> {
        for (int i = 0; i < 3; ++i) {
            co_await group.spawn([&]() -> asio::awaitable<void> {
                co_await door.pass();
                ++ended;
            });
        }
    };
    outcome<bool> scope;
    run(io, tame::with_task_group(io.get_executor(), 0, body), scope);
    io.poll();
    REQUIRE_FALSE(scope.done); // the body has returned; its tasks wait at the door

    door.open();
    io.poll();

    CHECK(scope.done);
    CHECK_FALSE(scope.failure);
    CHECK(ended == 3);
}

TEST_CASE("with_task_group returns the body's value", "[core][with_task_group]")
{
    asio::io_context io;
    auto body = [](tame::task_group& group) -> asio::awaitable<int> {
        co_await group.spawn([]() -> asio::awaitable<void> { co_return; });
        co_return 42;
    };
    outcome<int> scope;
    run(io, tame::with_task_group(io.get_executor(), 2, body), scope);

    io.run();

    CHECK(scope.value == 42);
}

TEST_CASE("a failed task cancels the body and the other tasks, and its exception is thrown",
          "[core][with_task_group]")
{
    asio::io_context io;
    gate door{io};
    std::optional<error_code> other_task, body_wait;
    auto body = [&](tame::task_group& group) -> asio::awaitable<void> {
        co_await group.spawn(sleeper(other_task));
        co_await group.spawn([&]() -> asio::awaitable<void> {
            co_await door.pass();
            throw std::runtime_error{"record 17 is corrupt"};
        });
        auto own_work = sleeper(body_wait); // the body goes on with work of its own
        co_await own_work();
    };
    outcome<bool> scope;
    run(io, tame::with_task_group(io.get_executor(), 0, body), scope);
    io.poll();
    REQUIRE_FALSE(scope.done);

    door.open();
    io.run();

    CHECK(scope.done);
    CHECK(scope.message() == "record 17 is corrupt");
    CHECK(other_task == asio::error::operation_aborted);
    CHECK(body_wait == asio::error::operation_aborted);
}

TEST_CASE("a body that throws has its tasks cancelled and awaited before its exception leaves",
          "[core][with_task_group]")
{
    asio::io_context io;
    std::optional<error_code> task_wait;
    auto body = [&](tame::task_group& group) -> asio::awaitable<void> {
        co_await group.spawn(sleeper(task_wait));
        asio::steady_timer later{co_await asio::this_coro::executor, 1ms};
        co_await later.async_wait(asio::use_awaitable);
        throw std::logic_error{"bad batch"};
    };
    std::string thrown;
    std::optional<error_code> task_at_the_end;
    asio::co_spawn(io, tame::with_task_group(io.get_executor(), 0, body),
                   [&](std::exception_ptr e) {
                       task_at_the_end = task_wait;
                       try {
                           std::rethrow_exception(e);
                       } catch (const std::exception& failure) {
                           thrown = failure.what();
                       }
                   });

    io.run();

    CHECK(thrown == "bad batch");
    CHECK(task_at_the_end == asio::error::operation_aborted);
}

TEST_CASE("cancelling the caller cancels the body and the tasks and still waits for them",
          "[core][with_task_group]")
{
    asio::io_context io;
    gate cleanup{io};
    std::optional<error_code> body_wait;
    bool task_cleaned_up = false;
    auto body = [&](tame::task_group& group) -> asio::awaitable<void> {
        co_await group.spawn([&]() -> asio::awaitable<void> {
            std::optional<error_code> wait;
            auto work = sleeper(wait);
            try {
                co_await work();
            } catch (const boost::system::system_error&) {
            }
            // Cancelled: a task may still need a moment to put things right.
            co_await asio::this_coro::reset_cancellation_state();
            co_await cleanup.pass();
            task_cleaned_up = true;
        });
        auto own_work = sleeper(body_wait);
        co_await own_work();
    };
    asio::cancellation_signal caller;
    outcome<bool> scope;
    run(io, tame::with_task_group(io.get_executor(), 0, body), scope, caller.slot());
    io.poll();

    caller.emit(asio::cancellation_type::terminal);
    io.poll();
    CHECK(body_wait == asio::error::operation_aborted);
    CHECK_FALSE(scope.done); // the task is still cleaning up
    cleanup.open();
    io.poll();

    CHECK(scope.done);
    CHECK(task_cleaned_up);
    CHECK(scope.code() == asio::error::operation_aborted);
}

TEST_CASE("a caller cancelled while the group is joined gets operation_aborted even when the "
          "tasks catch it",
          "[core][with_task_group]")
{
    asio::io_context io;
    std::optional<error_code> task_wait;
    auto body = [&](tame::task_group& group) -> asio::awaitable<void> {
        co_await group.spawn([&]() -> asio::awaitable<void> {
            auto work = sleeper(task_wait);
            try {
                co_await work();
            } catch (const boost::system::system_error&) {
                // Returns normally: the task had nothing to put right.
            }
        });
    };
    asio::cancellation_signal caller;
    outcome<bool> scope;
    run(io, tame::with_task_group(io.get_executor(), 0, body), scope, caller.slot());
    io.poll();
    REQUIRE_FALSE(scope.done); // the body has returned; the join waits

    caller.emit(asio::cancellation_type::terminal);
    io.poll();

    CHECK(task_wait == asio::error::operation_aborted);
    CHECK(scope.done);
    CHECK(scope.code() == asio::error::operation_aborted);
}

TEST_CASE("with keep_going, a failed task leaves the others running and is thrown at the end",
          "[core][with_task_group]")
{
    asio::io_context io;
    gate door{io};
    int finished = 0;
    auto body = [&](tame::task_group& group) -> asio::awaitable<void> {
        co_await group.spawn([]() -> asio::awaitable<void> {
            throw std::runtime_error{"job 3 failed"};
            co_return;
        });
        for (int i = 0; i < 2; ++i) {
            co_await group.spawn([&]() -> asio::awaitable<void> {
                co_await door.pass();
                ++finished;
            });
        }
    };
    outcome<bool> scope;
    run(io, tame::with_task_group(io.get_executor(), 0, tame::on_failure::keep_going, body), scope);
    io.poll();
    REQUIRE_FALSE(scope.done);

    door.open();
    io.poll();

    CHECK(finished == 2);
    CHECK(scope.message() == "job 3 failed");
}

TEST_CASE("the body's spawns wait at the limit", "[core][with_task_group]")
{
    asio::io_context io;
    gate door{io};
    int started = 0;
    auto body = [&](tame::task_group& group) -> asio::awaitable<void> {
        for (int i = 0; i < 5; ++i) {
            co_await group.spawn([&]() -> asio::awaitable<void> {
                ++started;
                co_await door.pass();
            });
        }
    };
    outcome<bool> scope;
    run(io, tame::with_task_group(io.get_executor(), 2, body), scope);
    io.poll();
    CHECK(started == 2);

    door.open();
    io.poll();

    CHECK(started == 5);
    CHECK(scope.done);
    CHECK_FALSE(scope.failure);
}

TEST_CASE("a task_group that keeps going is not cancelled by a failure", "[core][task_group]")
{
    asio::io_context io;
    gate door{io};
    tame::task_group group{io, 0, tame::on_failure::keep_going};
    bool other_finished = false;
    group.try_spawn([]() -> asio::awaitable<void> {
        throw std::runtime_error{"job 3 failed"};
        co_return;
    });
    group.try_spawn([&]() -> asio::awaitable<void> {
        co_await door.pass();
        other_finished = true;
    });
    io.poll();
    CHECK_FALSE(group.cancelled());
    CHECK(group.try_spawn([]() -> asio::awaitable<void> { co_return; }));

    door.open();
    std::exception_ptr joined;
    group.async_join([&](std::exception_ptr e) { joined = e; });
    io.poll();

    CHECK(other_finished);
    REQUIRE(joined);
    CHECK_THROWS_WITH(std::rethrow_exception(joined), "job 3 failed");
}

TEST_CASE("a group's cancellation source is emitted when the group is cancelled",
          "[core][task_group]")
{
    asio::io_context io;
    tame::task_group group{io};
    tame::cancel_source source = group.cancellation();
    CHECK_FALSE(source.cancelled());

    group.cancel();

    CHECK(source.cancelled());
}

TEST_CASE("with_cancellation returns the operation's value when nothing is emitted",
          "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source source;
    auto op = []() -> asio::awaitable<int> { co_return 7; };
    outcome<int> result;
    run(io, tame::with_cancellation(op(), source), result);

    io.run();

    CHECK(result.value == 7);
    CHECK(source.bound() == 0);
}

TEST_CASE("with_cancellation cancels the operation when its source is emitted",
          "[core][cancel_source]")
{
    asio::io_context io;
    tame::cancel_source source;
    std::optional<error_code> wait;
    outcome<bool> result;
    auto work = sleeper(wait);
    run(io, tame::with_cancellation(work(), source), result);
    io.poll();
    REQUIRE_FALSE(result.done);

    source.emit();
    io.poll();

    CHECK(wait == asio::error::operation_aborted);
    CHECK(result.code() == asio::error::operation_aborted);
}
