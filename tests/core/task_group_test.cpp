#include <tame/task_group.hpp>

#include <tame/deadline.hpp>
#include <tame/semaphore.hpp>
#include <tame_test/error_code_record.hpp>
#include <tame_test/exception_of.hpp>
#include <tame_test/gate.hpp>
#include <tame_test/manual_clock.hpp>
#include <tame_test/peak.hpp>
#include <tame_test/sleeper.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <exception>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using tame::error_code;
using tame_test::error_code_record;
using tame_test::gate;
using tame_test::manual_clock;
using tame_test::sleeper;

namespace {

/// How a join ended.
struct join_result {
    int completions = 0;
    std::exception_ptr failure;

    auto handler()
    {
        return [this](std::exception_ptr e) {
            ++completions;
            failure = e;
        };
    }

    std::string message() const { return tame_test::message_of(failure); }

    error_code code() const { return tame_test::code_of(failure); }
};

} // namespace

TEST_CASE("spawned tasks run and a join reports no failure", "[core][task_group]")
{
    asio::io_context io;
    tame::task_group group{io};
    int ran = 0;
    for (int i = 0; i < 3; ++i) {
        group.async_spawn(
            [&]() -> asio::awaitable<void> {
                ++ran;
                co_return;
            },
            [](error_code) {});
    }
    join_result join;
    group.async_join(join.handler());

    io.run();

    CHECK(ran == 3);
    CHECK(join.completions == 1);
    CHECK_FALSE(join.failure);
}

TEST_CASE("a join waits until every task has ended", "[core][task_group]")
{
    asio::io_context io;
    gate door{io};
    tame::task_group group{io};
    int ended = 0;
    for (int i = 0; i < 3; ++i) {
        group.try_spawn([&]() -> asio::awaitable<void> {
            co_await door.pass();
            ++ended;
        });
    }
    join_result join;
    group.async_join(join.handler());
    io.poll();
    CHECK(join.completions == 0);
    CHECK(group.running() == 3);

    door.open();
    io.poll();

    CHECK(ended == 3);
    CHECK(join.completions == 1);
    CHECK(group.running() == 0);
}

TEST_CASE("a join with no task in flight completes at once, outside the call", "[core][task_group]")
{
    asio::io_context io;
    tame::task_group group{io};
    join_result join;

    group.async_join(join.handler());
    CHECK(join.completions == 0);
    io.poll();

    CHECK(join.completions == 1);
    CHECK_FALSE(join.failure);
}

TEST_CASE("at the limit, async_spawn waits for a task to end", "[core][task_group]")
{
    asio::io_context io;
    gate door{io};
    tame::task_group group{io, 2};
    int started = 0;
    auto task = [&]() -> asio::awaitable<void> {
        ++started;
        co_await door.pass();
    };
    error_code_record first;
    error_code_record second;
    error_code_record third;
    group.async_spawn(task, first.handler());
    group.async_spawn(task, second.handler());
    group.async_spawn(task, third.handler());
    io.poll();
    CHECK(first.completions == 1);
    CHECK(second.completions == 1);
    CHECK(third.completions == 0);
    CHECK(started == 2);

    door.open();
    io.poll();

    CHECK(third.completions == 1);
    CHECK_FALSE(third.ec);
    CHECK(started == 3);
}

TEST_CASE("a spawn completes once its task has been scheduled", "[core][task_group]")
{
    asio::io_context io;
    gate door{io};
    tame::task_group group{io};
    std::size_t running_at_completion = 0;

    group.async_spawn([&]() -> asio::awaitable<void> { co_await door.pass(); },
                      [&](error_code) { running_at_completion = group.running(); });
    io.poll();

    CHECK(running_at_completion == 1);
    door.open();
    io.poll();
}

TEST_CASE("try_spawn refuses at the limit and never waits", "[core][task_group]")
{
    asio::io_context io;
    gate door{io};
    tame::task_group group{io, 1};
    auto task = [&]() -> asio::awaitable<void> { co_await door.pass(); };

    CHECK(group.try_spawn(task));
    CHECK_FALSE(group.try_spawn(task));
    CHECK(group.running() == 1);

    door.open();
    io.poll();
    CHECK(group.try_spawn(task));
    io.poll();
}

TEST_CASE("try_spawn does not jump the queue of waiting spawns", "[core][task_group]")
{
    asio::io_context io;
    gate door{io};
    tame::task_group group{io, 1};
    std::vector<int> order;
    auto task = [&](int id) {
        return [&, id]() -> asio::awaitable<void> {
            order.push_back(id);
            co_await door.pass();
        };
    };
    REQUIRE(group.try_spawn(task(1)));
    error_code_record waiting;
    group.async_spawn(task(2), waiting.handler());
    io.poll();
    door.open();
    // The first task ends in the same poll as the waiting spawn takes its slot.
    CHECK_FALSE(group.try_spawn(task(3)));
    io.poll();

    CHECK(order == std::vector<int>{1, 2});
    CHECK(waiting.completions == 1);
}

TEST_CASE("the first failure is what join reports, and it cancels the other tasks",
          "[core][task_group]")
{
    asio::io_context io;
    gate door{io};
    tame::task_group group{io};
    std::optional<error_code> sleeper_ended;
    group.try_spawn(sleeper(sleeper_ended));
    group.try_spawn([&]() -> asio::awaitable<void> {
        co_await door.pass();
        throw std::runtime_error{"record 17 is corrupt"};
    });
    join_result join;
    group.async_join(join.handler());
    io.poll();
    REQUIRE_FALSE(sleeper_ended);

    door.open();
    io.run();

    CHECK(sleeper_ended == asio::error::operation_aborted);
    CHECK(join.completions == 1);
    CHECK(join.message() == "record 17 is corrupt");
    CHECK(group.cancelled());
}

TEST_CASE("after a failure the group starts no more tasks", "[core][task_group]")
{
    asio::io_context io;
    gate door{io};
    tame::task_group group{io, 1};
    bool late_task_ran = false;
    auto late_task = [&]() -> asio::awaitable<void> {
        late_task_ran = true;
        co_return;
    };
    group.try_spawn([&]() -> asio::awaitable<void> {
        co_await door.pass();
        throw std::runtime_error{"boom"};
    });
    error_code_record waiting;
    group.async_spawn(late_task, waiting.handler());
    io.poll();
    REQUIRE(waiting.completions == 0);

    door.open();
    io.poll();
    error_code_record after;
    group.async_spawn(late_task, after.handler());
    io.restart();
    io.poll();

    CHECK(waiting.ec == asio::error::operation_aborted);
    CHECK(after.ec == asio::error::operation_aborted);
    CHECK_FALSE(group.try_spawn(late_task));
    CHECK_FALSE(late_task_ran);
}

TEST_CASE("an exception from the task factory itself is the task's failure", "[core][task_group]")
{
    asio::io_context io;
    tame::task_group group{io};
    error_code_record spawn;
    group.async_spawn([]() -> asio::awaitable<void> { throw std::invalid_argument{"no such id"}; },
                      spawn.handler());
    join_result join;
    group.async_join(join.handler());

    io.run();

    CHECK_FALSE(spawn.ec);
    CHECK(join.message() == "no such id");
}

TEST_CASE("cancel reaches running tasks and waiting spawns", "[core][task_group]")
{
    asio::io_context io;
    tame::task_group group{io, 1};
    std::optional<error_code> sleeper_ended;
    group.try_spawn(sleeper(sleeper_ended));
    error_code_record waiting;
    group.async_spawn(sleeper(sleeper_ended), waiting.handler());
    join_result join;
    group.async_join(join.handler());
    io.poll();

    group.cancel();
    io.run();

    CHECK(sleeper_ended == asio::error::operation_aborted);
    CHECK(waiting.ec == asio::error::operation_aborted);
    CHECK(join.code() == asio::error::operation_aborted);
}

TEST_CASE("cancelling a waiting spawn leaves the group and its tasks alone", "[core][task_group]")
{
    asio::io_context io;
    gate door{io};
    tame::task_group group{io, 1};
    bool ran = false;
    group.try_spawn([&]() -> asio::awaitable<void> {
        co_await door.pass();
        ran = true;
    });
    asio::cancellation_signal signal;
    error_code_record waiting;
    group.async_spawn([]() -> asio::awaitable<void> { co_return; },
                      asio::bind_cancellation_slot(signal.slot(), waiting.handler()));
    io.poll();

    signal.emit(asio::cancellation_type::partial);
    io.poll();
    CHECK(waiting.ec == asio::error::operation_aborted);

    door.open();
    join_result join;
    group.async_join(join.handler());
    io.run();
    CHECK(ran);
    CHECK_FALSE(group.cancelled());
    CHECK_FALSE(join.failure);
}

TEST_CASE("a cancelled join cancels the group and still waits for its tasks", "[core][task_group]")
{
    asio::io_context io;
    gate door{io};
    tame::task_group group{io};
    bool task_ended = false;
    // Ignores cancellation for a while: finishes its cleanup behind the gate.
    group.try_spawn([&]() -> asio::awaitable<void> {
        asio::steady_timer timer{co_await asio::this_coro::executor, 1h};
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable)); // ends aborted
        co_await asio::this_coro::reset_cancellation_state();
        co_await door.pass();
        task_ended = true;
    });
    asio::cancellation_signal signal;
    join_result join;
    group.async_join(asio::bind_cancellation_slot(signal.slot(), join.handler()));
    io.poll();

    signal.emit(asio::cancellation_type::terminal);
    io.poll();
    CHECK(group.cancelled());
    CHECK(join.completions == 0);

    door.open();
    io.poll();

    CHECK(task_ended);
    CHECK(join.completions == 1);
    CHECK_FALSE(join.failure); // the task ended cleanly
}

TEST_CASE("a join under a deadline stops the group's work at the deadline", "[core][task_group]")
{
    asio::io_context io;
    tame::task_group group{io};
    std::optional<error_code> sleeper_ended;
    group.try_spawn(sleeper(sleeper_ended));
    join_result join;
    group.async_join(tame::cancel_at(manual_clock::now() + 2s, join.handler()));
    io.poll();
    REQUIRE(join.completions == 0);

    manual_clock::advance(2s);
    io.run();

    CHECK(sleeper_ended == asio::error::operation_aborted);
    CHECK(join.code() == asio::error::operation_aborted);
}

TEST_CASE("with_deadline around a join in a coroutine reports timed_out and leaves nothing running",
          "[core][task_group]")
{
    asio::io_context io;
    std::optional<error_code> sleeper_ended;
    std::optional<error_code> outcome;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            tame::task_group group{co_await asio::this_coro::executor, 4};
            co_await group.async_spawn(sleeper(sleeper_ended), asio::use_awaitable);
            try {
                // On a manual clock: a real 1 ms could pass before the join
                // starts, and a deadline already passed never runs it.
                co_await tame::with_deadline(group.async_join(asio::use_awaitable),
                                             manual_clock::now() + 1s);
                outcome = error_code{};
            } catch (const boost::system::system_error& e) {
                outcome = e.code();
            }
            CHECK(group.running() == 0);
        },
        asio::detached);
    io.poll();
    REQUIRE_FALSE(outcome);

    manual_clock::advance(1s);
    io.run(); // returns only once the sleeper has ended

    CHECK(outcome == tame::errc::timed_out);
    CHECK(sleeper_ended == asio::error::operation_aborted);
}

TEST_CASE("a spawn loop stops at the first refused spawn and its join throws the failure",
          "[core][task_group]")
{
    asio::io_context io;
    std::string caught;
    error_code refused;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            tame::task_group group{co_await asio::this_coro::executor, 2};
            for (int i = 0; i < 100; ++i) {
                auto [ec] = co_await group.async_spawn(
                    [i]() -> asio::awaitable<void> {
                        if (i == 3) {
                            throw std::runtime_error{"task 3 failed"};
                        }
                        co_await asio::post(asio::use_awaitable);
                    },
                    asio::as_tuple(asio::use_awaitable));
                if (ec) {
                    refused = ec;
                    break; // the group was cancelled: a task failed
                }
            }
            try {
                co_await group.async_join(asio::use_awaitable);
            } catch (const std::runtime_error& e) {
                caught = e.what();
            }
        },
        asio::detached);

    io.run();

    CHECK(refused == asio::error::operation_aborted);
    CHECK(caught == "task 3 failed");
}

TEST_CASE("async_spawn and async_join work with deferred and use_future", "[core][task_group]")
{
    asio::io_context io;
    tame::task_group group{io};
    int ran = 0;
    auto spawn = group.async_spawn(
        [&]() -> asio::awaitable<void> {
            ++ran;
            co_return;
        },
        asio::deferred);
    io.poll();
    CHECK(ran == 0); // deferred: not started yet
    error_code_record spawned;
    std::move(spawn)(spawned.handler());
    std::future<void> joined = group.async_join(asio::use_future);

    io.restart();
    io.run();

    CHECK(spawned.completions == 1);
    CHECK(ran == 1);
    CHECK_NOTHROW(joined.get());
}

TEST_CASE("1000 tasks at a limit of 10 never run more than 10 at once, and all finish",
          "[core][task_group]")
{
    asio::io_context io;
    tame_test::peak_counter running;
    int finished = 0;
    bool joined = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            tame::task_group group{co_await asio::this_coro::executor, 10};
            for (int i = 0; i < 1000; ++i) {
                co_await group.async_spawn(
                    [&]() -> asio::awaitable<void> {
                        running.enter();
                        for (int step = 0; step < 50; ++step) {
                            co_await asio::post(asio::use_awaitable);
                        }
                        running.leave();
                        ++finished;
                    },
                    asio::use_awaitable);
            }
            co_await group.async_join(asio::use_awaitable);
            joined = true;
        },
        asio::detached);

    io.run();

    CHECK(joined);
    CHECK(finished == 1000);
    CHECK(running.peak() == 10u);
}

TEST_CASE("destroying a group with tasks in flight cancels them, and they end",
          "[core][task_group]")
{
    asio::io_context io;
    std::optional<error_code> sleeper_ended;
    error_code_record waiting;
    {
        tame::task_group group{io, 1};
        group.try_spawn(sleeper(sleeper_ended));
        group.async_spawn(sleeper(sleeper_ended), waiting.handler());
        io.poll();
    }

    io.run(); // returns: nothing is left waiting an hour

    CHECK(sleeper_ended == asio::error::operation_aborted);
    CHECK(waiting.ec == asio::error::operation_aborted);
}

TEST_CASE("a group destroyed just before its io_context leaks nothing", "[core][task_group]")
{
    // Run under ASan: tasks, a waiting spawn and a pending join all hold the
    // group's state, and the io_context destroys them without running them.
    std::optional<error_code> sleeper_ended;
    asio::io_context io;
    auto group = std::make_unique<tame::task_group>(io, 1);
    group->try_spawn(sleeper(sleeper_ended));
    group->async_spawn(sleeper(sleeper_ended), [](error_code) {});
    group->async_join([](std::exception_ptr) {});
    io.poll();

    group.reset();
}

TEST_CASE("a limit above a semaphore's capacity is refused", "[core][task_group]")
{
    asio::io_context io;
    CHECK_THROWS_AS((tame::task_group{io, tame::async_semaphore::max_capacity + 1}),
                    std::invalid_argument);
    tame::task_group unlimited{io};
    CHECK(unlimited.limit() == 0);
}

TEST_CASE("a task cancelled before its coroutine first runs is cancelled at its first await",
          "[core][task_group]")
{
    asio::io_context io;
    tame::task_group group{io};
    std::optional<error_code> sleeper_ended;
    REQUIRE(group.try_spawn(sleeper(sleeper_ended)));
    group.cancel();
    join_result join;
    group.async_join(join.handler());

    io.run();

    CHECK(join.completions == 1);
    CHECK(join.code() == asio::error::operation_aborted);
    CHECK(group.running() == 0);
}

TEST_CASE("spawn starts a task without suspending the spawner while a slot is free",
          "[core][task_group]")
{
    asio::io_context io;
    bool other_handler_ran = false;
    bool spawner_suspended = true;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            tame::task_group group{co_await asio::this_coro::executor, 2};
            asio::post(io, [&] { other_handler_ran = true; });
            co_await group.spawn([]() -> asio::awaitable<void> { co_return; });
            spawner_suspended = other_handler_ran;
            co_await group.async_join(asio::use_awaitable);
        },
        asio::detached);

    io.run();

    CHECK_FALSE(spawner_suspended);
}

TEST_CASE("spawn waits at the limit and throws operation_aborted once the group is cancelled",
          "[core][task_group]")
{
    asio::io_context io;
    std::optional<error_code> sleeper_ended;
    int spawned = 0;
    std::optional<error_code> thrown;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            tame::task_group group{co_await asio::this_coro::executor, 1};
            co_await group.spawn(sleeper(sleeper_ended));
            ++spawned;
            asio::post(io, [&] { group.cancel(); }); // while the next spawn waits
            try {
                co_await group.spawn(sleeper(sleeper_ended));
                ++spawned;
            } catch (const boost::system::system_error& e) {
                thrown = e.code();
            }
            co_await group.async_join(asio::as_tuple(asio::use_awaitable));
        },
        asio::detached);

    io.run();

    CHECK(spawned == 1);
    CHECK(thrown == asio::error::operation_aborted);
    CHECK(sleeper_ended == asio::error::operation_aborted);
}

TEST_CASE("spawn accepts a task factory that can only be moved", "[core][task_group]")
{
    asio::io_context io;
    int ran = 0;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            tame::task_group group{co_await asio::this_coro::executor, 1};
            for (int i = 0; i < 2; ++i) { // the second waits for a slot
                // Named first: g++ 12 destroys twice a lambda with an owning capture
                // that is created inside a co_await expression (see docs/behaviour.md).
                auto task = [&ran, counter = std::make_unique<int>(1)]() -> asio::awaitable<void> {
                    ran += *counter;
                    co_return;
                };
                co_await group.spawn(std::move(task));
            }
            co_await group.async_join(asio::use_awaitable);
        },
        asio::detached);

    io.run();

    CHECK(ran == 2);
}

TEST_CASE("spawn by a coroutine already cancelled throws without starting the task",
          "[core][task_group]")
{
    asio::io_context io;
    asio::cancellation_signal cancel_spawner;
    bool task_ran = false;
    std::optional<error_code> thrown;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            tame::task_group group{co_await asio::this_coro::executor};
            cancel_spawner.emit(asio::cancellation_type::terminal); // from inside: deterministic
            try {
                co_await group.spawn([&]() -> asio::awaitable<void> {
                    task_ran = true;
                    co_return;
                });
            } catch (const boost::system::system_error& e) {
                thrown = e.code();
            }
            co_await asio::this_coro::reset_cancellation_state();
            co_await group.async_join(asio::use_awaitable);
        },
        asio::bind_cancellation_slot(cancel_spawner.slot(), asio::detached));

    io.run();

    CHECK(thrown == asio::error::operation_aborted);
    CHECK_FALSE(task_ran);
}

TEST_CASE("total cancellation of a join is ignored: it cannot be honoured without side effects",
          "[core][task_group]")
{
    asio::io_context io;
    gate door{io};
    tame::task_group group{io};
    group.try_spawn([&]() -> asio::awaitable<void> { co_await door.pass(); });
    asio::cancellation_signal signal;
    join_result join;
    group.async_join(asio::bind_cancellation_slot(signal.slot(), join.handler()));
    io.poll();

    signal.emit(asio::cancellation_type::total);
    io.poll();
    CHECK_FALSE(group.cancelled());

    door.open();
    io.poll();
    CHECK(join.completions == 1);
    CHECK_FALSE(join.failure);
}

TEST_CASE("async_spawn with a free slot completes after the call, on the handler's executor",
          "[core][task_group]")
{
    asio::io_context io;
    asio::io_context other;
    tame::task_group group{io};
    error_code_record spawned;
    bool on_other = false;

    group.async_spawn([]() -> asio::awaitable<void> { co_return; },
                      asio::bind_executor(other, [&](error_code ec) {
                          on_other = other.get_executor().running_in_this_thread();
                          spawned.handler()(ec);
                      }));
    CHECK(spawned.completions == 0);
    io.poll();
    CHECK(spawned.completions == 0);
    other.poll();

    CHECK(spawned.completions == 1);
    CHECK_FALSE(spawned.ec);
    CHECK(on_other);
}

namespace {

struct throwing_move_factory {
    throwing_move_factory() = default;
    throwing_move_factory(throwing_move_factory&&) noexcept(false) {}
    asio::awaitable<void> operator()() { co_return; }
};

} // namespace

TEST_CASE("a task factory must move without throwing and return awaitable<void>",
          "[core][task_group]")
{
    auto task = []() -> asio::awaitable<void> { co_return; };
    auto wrong_result = []() -> asio::awaitable<int> { co_return 1; };
    STATIC_REQUIRE(tame::task_factory<decltype(task)>);
    STATIC_REQUIRE_FALSE(tame::task_factory<throwing_move_factory>);
    STATIC_REQUIRE_FALSE(tame::task_factory<decltype(wrong_result)>);
}
