#include <tame/task_pool.hpp>

#include <tame/deadline.hpp>
#include <tame/manual_time.hpp>
#include <tame/semaphore.hpp>
#include <tame/wait_group.hpp>
#include <tame_test/error_code_record.hpp>
#include <tame_test/exception_of.hpp>
#include <tame_test/gate.hpp>
#include <tame_test/peak.hpp>
#include <tame_test/sleeper.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using tame::error_code;
using tame_test::error_code_record;
using tame_test::gate;
using tame_test::sleeper;

namespace {

tame::task_pool_options capacity(std::size_t n)
{
    tame::task_pool_options options;
    options.capacity = n;
    return options;
}

/// A pool's options with `n` slots whose shutdown runs on `time`.
tame::task_pool_options capacity(std::size_t n, std::shared_ptr<tame::manual_time> time)
{
    tame::task_pool_options options = capacity(n);
    options.time = std::move(time);
    return options;
}

} // namespace

// ---- capacity and admission ------------------------------------------------------

TEST_CASE("a pool never runs more tasks than its capacity", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(10)};
    tame_test::peak_counter inside;
    int done = 0;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            for (int i = 0; i < 1000; ++i) {
                co_await pool.async_submit(
                    [&]() -> asio::awaitable<void> {
                        inside.enter();
                        asio::steady_timer timer{co_await asio::this_coro::executor, 1ms};
                        co_await timer.async_wait(asio::use_awaitable);
                        inside.leave();
                        ++done;
                    },
                    asio::use_awaitable);
            }
        },
        asio::detached);

    io.run();

    CHECK(done == 1000);
    CHECK(inside.peak() == 10u);
    CHECK(pool.stats().submitted == 1000);
}

TEST_CASE("waiting submitters are admitted in FIFO order", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(1)};
    gate first{io};
    std::vector<int> order;
    pool.async_submit([&]() -> asio::awaitable<void> { co_await first.pass(); }, [](error_code) {});
    for (int i = 0; i < 5; ++i) {
        pool.async_submit([&order, i] { order.push_back(i); }, [](error_code) {});
    }
    io.poll();
    REQUIRE(order.empty());
    CHECK(pool.stats().waiting == 5);

    first.open();
    io.run();

    CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("async_submit completes once its task has started, not when it ends", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(2)};
    gate hold{io};
    bool began = false;
    std::size_t running_at_completion = 0;
    error_code_record submit;
    pool.async_submit(
        [&]() -> asio::awaitable<void> {
            began = true;
            co_await hold.pass();
        },
        [&](error_code ec) {
            running_at_completion = pool.running();
            submit.handler()(ec);
        });
    CHECK(submit.completions == 0); // never inside the call

    io.poll();

    CHECK(submit.completions == 1);
    CHECK_FALSE(submit.ec);
    CHECK(running_at_completion == 1);
    CHECK(began);
    CHECK(pool.running() == 1);
    hold.open();
    io.run();
    CHECK(pool.running() == 0);
}

TEST_CASE("a submitter beyond max_waiting is refused with pool_overloaded", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool_options options;
    options.capacity = 1;
    options.max_waiting = 2;
    tame::task_pool pool{io, options};
    gate hold{io};
    pool.async_submit([&]() -> asio::awaitable<void> { co_await hold.pass(); }, [](error_code) {});
    error_code_record waiter1, waiter2, refused;
    bool refused_ran = false;
    pool.async_submit([] {}, waiter1.handler());
    pool.async_submit([] {}, waiter2.handler());
    pool.async_submit([&] { refused_ran = true; }, refused.handler());

    io.poll();

    CHECK(refused.completions == 1);
    CHECK(refused.ec == tame::errc::pool_overloaded);
    CHECK(waiter1.completions == 0);
    CHECK(pool.stats().rejected == 1);
    hold.open();
    io.run();
    CHECK(waiter1.completions == 1);
    CHECK(waiter2.completions == 1);
    CHECK_FALSE(waiter2.ec);
    CHECK_FALSE(refused_ran);
}

TEST_CASE("max_waiting 0 refuses at once when the pool is full, as ants' Nonblocking does",
          "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool_options options;
    options.capacity = 2;
    options.max_waiting = 0;
    tame::task_pool pool{io, options};
    gate hold{io};
    error_code_record first, second, third;
    pool.async_submit([&]() -> asio::awaitable<void> { co_await hold.pass(); }, first.handler());
    pool.async_submit([&]() -> asio::awaitable<void> { co_await hold.pass(); }, second.handler());
    pool.async_submit([] {}, third.handler());

    io.poll();

    CHECK_FALSE(first.ec);
    CHECK_FALSE(second.ec);
    CHECK(third.ec == tame::errc::pool_overloaded);
    CHECK(pool.stats().waiting == 0);
    hold.open();
    io.run();
}

TEST_CASE("try_submit starts a task when a slot is free and refuses otherwise without waiting",
          "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(1)};
    gate hold{io};
    int ran = 0;

    CHECK_FALSE(pool.try_submit([&]() -> asio::awaitable<void> {
        ++ran;
        co_await hold.pass();
    }));
    CHECK(pool.try_submit([&] { ++ran; }) == tame::errc::pool_overloaded);
    io.poll();
    CHECK(ran == 1);
    CHECK(pool.stats().waiting == 0);
    CHECK(pool.stats().rejected == 1);

    hold.open();
    io.run();
    io.restart();
    CHECK_FALSE(pool.try_submit([&] { ++ran; }));
    io.run();
    CHECK(ran == 2);
}

TEST_CASE("try_submit does not overtake a waiting submitter", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(1)};
    gate hold{io};
    std::vector<std::string> order;
    pool.async_submit([&]() -> asio::awaitable<void> { co_await hold.pass(); }, [](error_code) {});
    pool.async_submit([&] { order.push_back("waiter"); }, [](error_code) {});
    io.poll();
    hold.open();
    // The first task has ended, and its slot is promised to the waiter.
    CHECK(pool.try_submit([&] { order.push_back("try"); }) == tame::errc::pool_overloaded);
    io.run();
    CHECK(order == std::vector<std::string>{"waiter"});
}

TEST_CASE("async_submit works with callbacks, deferred, use_future and use_awaitable",
          "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(4)};
    int ran = 0;
    auto task = [&] { ++ran; };

    error_code_record callback;
    pool.async_submit(task, callback.handler());
    auto op = pool.async_submit(task, asio::deferred);
    error_code_record deferred;
    std::move(op)(deferred.handler());
    std::future<void> future = pool.async_submit(task, asio::use_future);
    bool awaited = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await pool.async_submit(task, asio::use_awaitable);
            awaited = true;
        },
        asio::detached);

    io.run();

    CHECK(ran == 4);
    CHECK(callback.completions == 1);
    CHECK(deferred.completions == 1);
    CHECK_NOTHROW(future.get());
    CHECK(awaited);
}

TEST_CASE("a submit's handler runs on its own associated executor", "[core][task_pool]")
{
    asio::io_context pool_io;
    asio::io_context caller_io;
    tame::task_pool pool{pool_io, capacity(1)};
    bool on_caller_thread = false;
    pool.async_submit([] {}, asio::bind_executor(caller_io, [&](error_code) {
                          on_caller_thread = caller_io.get_executor().running_in_this_thread();
                      }));

    pool_io.run();
    CHECK_FALSE(on_caller_thread);
    caller_io.run(); // the submit kept it busy: the handler is there
    CHECK(on_caller_thread);
}

TEST_CASE("a pool refuses a capacity of zero", "[core][task_pool]")
{
    asio::io_context io;
    CHECK_THROWS_AS(tame::task_pool(io, capacity(0)), std::invalid_argument);
}

// ---- results and failures --------------------------------------------------------

TEST_CASE("async_run delivers the value of a coroutine task", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io};
    std::optional<int> value;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            value = co_await pool.async_run(
                []() -> asio::awaitable<int> {
                    asio::steady_timer timer{co_await asio::this_coro::executor, 1ms};
                    co_await timer.async_wait(asio::use_awaitable);
                    co_return 42;
                },
                asio::use_awaitable);
        },
        asio::detached);

    io.run();

    CHECK(value == 42);
}

TEST_CASE("async_run delivers the value of a plain callable", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io};
    std::exception_ptr failure;
    std::string value;
    pool.async_run([] { return std::string{"report"}; },
                   [&](std::exception_ptr e, std::string v) {
                       failure = e;
                       value = std::move(v);
                   });

    io.run();

    CHECK_FALSE(failure);
    CHECK(value == "report");
}

TEST_CASE("async_run hands a task's exception to its caller, not to on_exception",
          "[core][task_pool]")
{
    asio::io_context io;
    int reported = 0;
    tame::task_pool_options options;
    options.on_exception = [&](std::exception_ptr) { ++reported; };
    tame::task_pool pool{io, options};
    std::string caught;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            try {
                co_await pool.async_run(
                    []() -> asio::awaitable<void> {
                        throw std::runtime_error{"no such report"};
                        co_return;
                    },
                    asio::use_awaitable);
            } catch (const std::runtime_error& e) {
                caught = e.what();
            }
        },
        asio::detached);

    io.run();

    CHECK(caught == "no such report");
    CHECK(reported == 0);
    CHECK(pool.stats().failed == 1);
}

TEST_CASE("an exception escaping a submitted task reaches on_exception once and the pool goes on",
          "[core][task_pool]")
{
    asio::io_context io;
    std::vector<std::string> reported;
    tame::task_pool_options options;
    options.capacity = 2;
    options.on_exception = [&](std::exception_ptr e) {
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& error) {
            reported.push_back(error.what());
        }
    };
    tame::task_pool pool{io, options};
    int ran = 0;
    pool.async_submit(
        []() -> asio::awaitable<void> {
            throw std::runtime_error{"coroutine"};
            co_return;
        },
        [](error_code) {});
    pool.async_submit([] { throw std::runtime_error{"plain"}; }, [](error_code) {});
    for (int i = 0; i < 5; ++i) {
        pool.async_submit([&] { ++ran; }, [](error_code) {});
    }

    io.run();

    std::sort(reported.begin(), reported.end());
    CHECK(reported == std::vector<std::string>{"coroutine", "plain"});
    CHECK(ran == 5);
    const auto stats = pool.stats();
    CHECK(stats.failed == 2);
    CHECK(stats.completed == 5);
}

TEST_CASE("a throwing on_exception does not take the pool down", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool_options options;
    options.on_exception = [](std::exception_ptr) { throw std::logic_error{"bad reporter"}; };
    tame::task_pool pool{io, options};
    int ran = 0;
    pool.async_submit([] { throw std::runtime_error{"task"}; }, [](error_code) {});
    pool.async_submit([&] { ++ran; }, [](error_code) {});

    CHECK_NOTHROW(io.run());
    CHECK(ran == 1);
}

// ---- strands and keys ------------------------------------------------------------

TEST_CASE("tasks run on the pool's strands", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool_options options;
    options.strands = 3;
    tame::task_pool pool{io, options};
    int on_strand = 0;
    for (int i = 0; i < 6; ++i) {
        pool.async_submit(
            [&]() -> asio::awaitable<void> {
                auto ex = co_await asio::this_coro::executor;
                using strand = asio::strand<asio::io_context::executor_type>;
                if (ex.target<strand>() != nullptr &&
                    ex.target<strand>()->running_in_this_thread()) {
                    ++on_strand;
                }
            },
            [](error_code) {});
    }

    io.run();

    CHECK(on_strand == 6);
}

TEST_CASE("a single-threaded pool runs its tasks on its own executor, without strands",
          "[core][task_pool]")
{
    asio::io_context io{1};
    tame::task_pool_options options;
    options.single_threaded = true;
    tame::task_pool pool{io, options};
    int on_pool_executor = 0;
    std::optional<error_code> slept;
    for (int i = 0; i < 3; ++i) {
        pool.async_submit(
            [&]() -> asio::awaitable<void> {
                auto ex = co_await asio::this_coro::executor;
                if (ex == asio::any_io_executor{io.get_executor()}) {
                    ++on_pool_executor;
                }
            },
            [](error_code) {});
    }
    pool.async_submit(sleeper(slept), [](error_code) {});
    io.poll();
    pool.cancel_all(); // still reaches the task, on the executor itself

    io.run();

    CHECK(on_pool_executor == 3);
    CHECK(slept == error_code{asio::error::operation_aborted});
}

TEST_CASE("tasks with the same key run one at a time, in submission order", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(8)};
    std::vector<std::string> log;
    std::map<int, tame_test::peak_counter> per_key;
    // Interleaved keys; every task suspends in the middle, so only the key's
    // order (not the strand's) keeps same-key tasks apart.
    for (int i = 0; i < 12; ++i) {
        const int key = i % 3;
        pool.async_submit(
            tame::keyed{key},
            [&, key, i]() -> asio::awaitable<void> {
                per_key[key].enter();
                log.push_back(std::to_string(key) + ":" + std::to_string(i) + " begin");
                asio::steady_timer timer{co_await asio::this_coro::executor, 1ms * (12 - i)};
                co_await timer.async_wait(asio::use_awaitable);
                log.push_back(std::to_string(key) + ":" + std::to_string(i) + " end");
                per_key[key].leave();
            },
            [](error_code) {});
    }

    io.run();

    for (int key = 0; key < 3; ++key) {
        CHECK(per_key[key].peak() == 1u);
        std::vector<std::string> mine;
        for (const auto& line : log) {
            if (line.starts_with(std::to_string(key) + ":")) {
                mine.push_back(line);
            }
        }
        std::vector<std::string> expected;
        for (int i = key; i < 12; i += 3) {
            expected.push_back(std::to_string(key) + ":" + std::to_string(i) + " begin");
            expected.push_back(std::to_string(key) + ":" + std::to_string(i) + " end");
        }
        CHECK(mine == expected);
    }
}

TEST_CASE("tasks with different keys run in parallel", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(8)};
    tame_test::peak_counter inside;
    gate hold{io};
    for (int key = 0; key < 4; ++key) {
        pool.async_submit(
            tame::keyed{key},
            [&]() -> asio::awaitable<void> {
                inside.enter();
                co_await hold.pass();
                inside.leave();
            },
            [](error_code) {});
    }
    io.poll();
    CHECK(inside.current() == 4u);
    hold.open();
    io.run();
}

TEST_CASE("a keyed submit waiting for its key's turn is cancellable and leaves the key usable",
          "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(4)};
    gate hold{io};
    std::vector<int> ran;
    pool.async_submit(
        tame::keyed{"patient-7"},
        [&]() -> asio::awaitable<void> {
            co_await hold.pass();
            ran.push_back(1);
        },
        [](error_code) {});
    asio::cancellation_signal signal;
    error_code_record cancelled;
    pool.async_submit(
        tame::keyed{"patient-7"}, [&] { ran.push_back(2); },
        asio::bind_cancellation_slot(signal.slot(), cancelled.handler()));
    pool.async_submit(
        tame::keyed{"patient-7"}, [&] { ran.push_back(3); }, [](error_code) {});
    io.poll();
    CHECK(pool.stats().waiting == 2);

    signal.emit(asio::cancellation_type::terminal);
    io.poll();
    CHECK(cancelled.ec == asio::error::operation_aborted);
    CHECK(pool.stats().waiting == 1);

    hold.open();
    io.run();
    CHECK(ran == std::vector<int>{1, 3});
}

// ---- cancellation ----------------------------------------------------------------

TEST_CASE("cancel_all reaches every running task through its cancellation slot",
          "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(8)};
    std::vector<std::optional<error_code>> ended(5);
    for (auto& e : ended) {
        pool.async_submit(sleeper(e), [](error_code) {});
    }
    io.poll();
    REQUIRE(pool.running() == 5);

    pool.cancel_all();
    io.run();

    for (const auto& e : ended) {
        CHECK(e == error_code{asio::error::operation_aborted});
    }
    const auto stats = pool.stats();
    CHECK(stats.cancelled == 5);
    CHECK(stats.failed == 0);
}

TEST_CASE("cancel_all leaves tasks started after it alone", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(8)};
    std::optional<error_code> before, after;
    pool.async_submit(sleeper(before), [](error_code) {});
    io.poll();
    pool.cancel_all();
    pool.async_submit(
        [&]() -> asio::awaitable<void> {
            asio::steady_timer timer{co_await asio::this_coro::executor, 1ms};
            co_await timer.async_wait(asio::use_awaitable);
            after = error_code{};
        },
        [](error_code) {});

    io.run();

    CHECK(before == error_code{asio::error::operation_aborted});
    CHECK(after == error_code{});
}

TEST_CASE("cancel_all right after a submit stops the task at its first wait", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(8)};
    std::optional<error_code> ended;
    error_code_record submit;
    pool.async_submit(sleeper(ended), submit.handler());
    pool.cancel_all(); // before the io_context has run anything

    CHECK_NOTHROW(io.run());

    CHECK(ended == error_code{asio::error::operation_aborted});
    CHECK(submit.completions == 1);
    CHECK_FALSE(submit.ec);
    CHECK(pool.stats().cancelled == 1);
}

TEST_CASE("cancellation of a running task is emitted on that task's own strand",
          "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool_options options;
    options.strands = 4;
    tame::task_pool pool{io, options};
    int emitted_on_own_strand = 0;
    int emissions = 0;
    for (int i = 0; i < 8; ++i) {
        pool.async_submit(
            [&]() -> asio::awaitable<void> {
                auto strand = co_await asio::this_coro::executor;
                // An operation whose cancellation handler records where it runs.
                // (Named: g++ 12 destroys an owning lambda made inside co_await twice.)
                auto initiation = [&, strand](auto handler) {
                    auto slot = asio::get_associated_cancellation_slot(handler);
                    auto shared = std::make_shared<decltype(handler)>(std::move(handler));
                    slot.assign([&, strand, shared, slot](asio::cancellation_type) mutable {
                        ++emissions;
                        using type = asio::strand<asio::io_context::executor_type>;
                        if (strand.target<type>()->running_in_this_thread()) {
                            ++emitted_on_own_strand;
                        }
                        asio::post(strand, [shared, slot]() mutable {
                            slot.clear();
                            (*shared)(asio::error::operation_aborted);
                        });
                    });
                };
                co_await asio::async_initiate<const asio::use_awaitable_t<>, void(error_code)>(
                    initiation, asio::use_awaitable);
            },
            [](error_code) {});
    }
    io.poll();

    std::thread other{[&] { pool.cancel_all(); }}; // from a foreign thread
    other.join();
    io.run();

    CHECK(emissions == 8);
    CHECK(emitted_on_own_strand == 8);
}

TEST_CASE("a waiting async_submit is cancelled through its own slot", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(1)};
    gate hold{io};
    pool.async_submit([&]() -> asio::awaitable<void> { co_await hold.pass(); }, [](error_code) {});
    asio::cancellation_signal signal;
    error_code_record waiter;
    bool ran = false;
    pool.async_submit([&] { ran = true; },
                      asio::bind_cancellation_slot(signal.slot(), waiter.handler()));
    io.poll();

    signal.emit(asio::cancellation_type::total);
    io.poll();

    CHECK(waiter.ec == asio::error::operation_aborted);
    CHECK(pool.stats().waiting == 0);
    hold.open();
    io.run();
    CHECK_FALSE(ran);
    CHECK(pool.stats().submitted == 1);
}

TEST_CASE("an async_run cancelled while its granted slot is on the way never starts its task",
          "[core][task_pool]")
{
    // The caller's executor is another io_context, held still, so that the
    // slot is granted (and the grant posted to the caller) before the caller
    // sees the cancellation: the cancellation comes too late for the wait.
    asio::io_context pool_io;
    asio::io_context caller_io;
    tame::task_pool pool{pool_io, capacity(1)};
    gate hold{pool_io};
    pool.async_submit([&]() -> asio::awaitable<void> { co_await hold.pass(); }, [](error_code) {});
    asio::cancellation_signal signal;
    std::optional<error_code> ended;
    std::exception_ptr outcome;
    int completions = 0;
    pool.async_run(sleeper(ended),
                   asio::bind_executor(caller_io, asio::bind_cancellation_slot(
                                                      signal.slot(), [&](std::exception_ptr e) {
                                                          ++completions;
                                                          outcome = e;
                                                      })));
    pool_io.poll();
    hold.open();
    pool_io.poll(); // the blocker ends; its slot goes to the waiting run

    signal.emit(asio::cancellation_type::terminal);
    caller_io.poll();
    pool_io.poll();
    caller_io.poll();

    CHECK(completions == 1);
    CHECK(tame_test::code_of(outcome) == asio::error::operation_aborted);
    CHECK_FALSE(ended);
    CHECK(pool.running() == 0);
    CHECK(pool.stats().waiting == 0);
}

TEST_CASE("an async_submit cancelled while its granted slot is on the way never starts its task",
          "[core][task_pool]")
{
    asio::io_context pool_io;
    asio::io_context caller_io;
    tame::task_pool pool{pool_io, capacity(1)};
    gate hold{pool_io};
    pool.async_submit([&]() -> asio::awaitable<void> { co_await hold.pass(); }, [](error_code) {});
    asio::cancellation_signal signal;
    error_code_record waiter;
    bool ran = false;
    pool.async_submit([&] { ran = true; },
                      asio::bind_executor(caller_io, asio::bind_cancellation_slot(
                                                         signal.slot(), waiter.handler())));
    pool_io.poll();
    hold.open();
    pool_io.poll();

    signal.emit(asio::cancellation_type::terminal);
    caller_io.poll();
    pool_io.poll();
    caller_io.poll();

    CHECK(waiter.completions == 1);
    CHECK(waiter.ec == asio::error::operation_aborted);
    CHECK_FALSE(ran);
    CHECK(pool.running() == 0);
}

TEST_CASE("cancel_after bounds the wait of an async_submit", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(1)};
    std::optional<error_code> blocker;
    pool.async_submit(sleeper(blocker), [](error_code) {});
    error_code_record waiter;
    pool.async_submit([] {}, tame::cancel_after(5ms, waiter.handler()));

    io.run_for(200ms);
    CHECK(waiter.ec == asio::error::operation_aborted);
    pool.cancel_all();
    io.run();
}

TEST_CASE("cancelling an async_run whose task runs cancels the task", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(2)};
    std::optional<error_code> ended;
    error_code outcome;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            try {
                co_await pool.async_run(sleeper(ended),
                                        tame::cancel_after(5ms, asio::use_awaitable));
            } catch (const boost::system::system_error& e) {
                outcome = e.code();
            }
        },
        asio::detached);

    io.run();

    CHECK(ended == error_code{asio::error::operation_aborted});
    CHECK(outcome == asio::error::operation_aborted);
    CHECK(pool.stats().cancelled == 1);
}

TEST_CASE("a partial cancellation of a running async_run reaches only a task that accepts it",
          "[core][task_pool]")
{
    asio::io_context io{1};
    tame::task_pool pool{io, capacity(2)};
    asio::cancellation_signal plain_signal, widened_signal;
    std::optional<error_code> plain_ended, widened_ended;
    std::optional<error_code> plain_timer_ended;
    pool.async_run(
        [&]() -> asio::awaitable<void> {
            asio::steady_timer timer{co_await asio::this_coro::executor, 20ms};
            auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
            plain_timer_ended = ec;
        },
        asio::bind_cancellation_slot(plain_signal.slot(),
                                     [&](std::exception_ptr) { plain_ended = error_code{}; }));
    pool.async_run(
        [&]() -> asio::awaitable<void> {
            co_await asio::this_coro::reset_cancellation_state(asio::enable_partial_cancellation());
            asio::steady_timer timer{co_await asio::this_coro::executor, 1h};
            auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
            widened_ended = ec;
        },
        asio::bind_cancellation_slot(widened_signal.slot(), [](std::exception_ptr) {}));
    io.poll();

    plain_signal.emit(asio::cancellation_type::partial);
    widened_signal.emit(asio::cancellation_type::partial);
    io.run();

    CHECK(plain_timer_ended == error_code{}); // co_spawn's default filter: terminal only
    CHECK(plain_ended);
    CHECK(widened_ended == error_code{asio::error::operation_aborted});
    CHECK(pool.stats().cancelled == 0); // neither ended by throwing a cancellation
}

// ---- resizing and stats ----------------------------------------------------------

TEST_CASE("growing a pool admits waiting submitters at once", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(1)};
    gate hold{io};
    tame_test::peak_counter inside;
    for (int i = 0; i < 4; ++i) {
        pool.async_submit(
            [&]() -> asio::awaitable<void> {
                inside.enter();
                co_await hold.pass();
                inside.leave();
            },
            [](error_code) {});
    }
    io.poll();
    CHECK(inside.current() == 1u);

    pool.resize(3);
    io.poll();

    CHECK(inside.current() == 3u);
    CHECK(pool.stats().capacity == 3);
    hold.open();
    io.run();
}

TEST_CASE("shrinking a pool lets running tasks finish and admits new ones below the new capacity",
          "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(4)};
    gate first_wave{io};
    tame_test::peak_counter inside;
    gate second_wave{io};
    for (int i = 0; i < 4; ++i) {
        pool.async_submit(
            [&]() -> asio::awaitable<void> {
                inside.enter();
                co_await first_wave.pass();
                inside.leave();
            },
            [](error_code) {});
    }
    io.poll();
    CHECK(inside.current() == 4u);

    pool.resize(2);
    tame_test::peak_counter later;
    for (int i = 0; i < 4; ++i) {
        pool.async_submit(
            [&]() -> asio::awaitable<void> {
                later.enter();
                co_await second_wave.pass();
                later.leave();
            },
            [](error_code) {});
    }
    io.poll();
    CHECK(inside.current() == 4u); // nothing cut short
    CHECK(later.current() == 0u);

    first_wave.open();
    io.poll();
    CHECK(later.current() == 2u);
    second_wave.open();
    io.run();
    CHECK(later.peak() == 2u);
}

TEST_CASE("stats add up once the pool is idle", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool_options options;
    options.capacity = 2;
    options.max_waiting = 1;
    options.on_exception = [](std::exception_ptr) {};
    tame::task_pool pool{io, options};
    std::optional<error_code> slept;
    pool.async_submit(sleeper(slept), [](error_code) {});
    pool.async_submit([] { throw std::runtime_error{"x"}; }, [](error_code) {});
    pool.async_submit([] {}, [](error_code) {});                  // waits
    pool.async_submit([] {}, [](error_code) {});                  // refused
    CHECK(pool.try_submit([] {}) == tame::errc::pool_overloaded); // refused
    io.poll();
    auto busy = pool.stats();
    CHECK(busy.running <= busy.capacity);
    pool.cancel_all();
    io.run();

    const auto s = pool.stats();
    CHECK(s.running == 0);
    CHECK(s.waiting == 0);
    CHECK(s.submitted == 3);
    CHECK(s.completed == 1);
    CHECK(s.failed == 1);
    CHECK(s.cancelled == 1);
    CHECK(s.rejected == 2);
    CHECK(s.submitted == s.completed + s.failed + s.cancelled + s.running);
}

// ---- closing, draining, shutting down --------------------------------------------

TEST_CASE("close refuses new work with closed and fails waiting submitters", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(1)};
    gate hold{io};
    bool finished = false;
    pool.async_submit(
        [&]() -> asio::awaitable<void> {
            co_await hold.pass();
            finished = true;
        },
        [](error_code) {});
    error_code_record waiting, later;
    pool.async_submit([] {}, waiting.handler());
    io.poll();

    pool.close();
    pool.async_submit([] {}, later.handler());
    io.poll();

    CHECK(waiting.ec == tame::errc::closed);
    CHECK(later.ec == tame::errc::closed);
    CHECK(pool.try_submit([] {}) == tame::errc::closed);
    CHECK(pool.is_closed());
    hold.open();
    io.run();
    CHECK(finished); // running work goes on
}

TEST_CASE("async_drain completes when the last admitted task ends", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(2)};
    int done = 0;
    for (int i = 0; i < 6; ++i) {
        pool.async_submit(
            [&, i]() -> asio::awaitable<void> {
                asio::steady_timer timer{co_await asio::this_coro::executor, 1ms * i};
                co_await timer.async_wait(asio::use_awaitable);
                ++done;
            },
            [](error_code) {});
    }
    int done_at_drain = -1;
    pool.async_drain([&](error_code) { done_at_drain = done; });

    io.run();

    CHECK(done_at_drain == 6);
}

TEST_CASE("the ReleaseTimeout pattern: with_timeout(async_drain), then cancel_all",
          "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(4)};
    std::optional<error_code> slow;
    bool quick = false;
    pool.async_submit(sleeper(slow), [](error_code) {});
    pool.async_submit([&] { quick = true; }, [](error_code) {});
    bool timed_out = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            pool.close();
            try {
                co_await tame::with_timeout(pool.async_drain(asio::use_awaitable), 10ms);
            } catch (const boost::system::system_error& e) {
                timed_out = e.code() == tame::errc::timed_out;
            }
            if (timed_out) {
                pool.cancel_all();
                co_await pool.async_drain(asio::use_awaitable);
            }
        },
        asio::detached);

    io.run();

    CHECK(quick);
    CHECK(timed_out);
    CHECK(slow == error_code{asio::error::operation_aborted});
    CHECK(pool.running() == 0);
}

TEST_CASE("async_shutdown reports no cancellation when the work ends within the grace period",
          "[core][task_pool]")
{
    asio::io_context io;
    auto time = std::make_shared<tame::manual_time>();
    tame::task_pool pool{io, capacity(4, time)};
    gate work{io};
    int done = 0;
    for (int i = 0; i < 4; ++i) {
        pool.async_submit(
            [&]() -> asio::awaitable<void> {
                co_await work.pass();
                ++done;
            },
            [](error_code) {});
    }
    std::optional<std::size_t> cancelled;
    pool.async_shutdown(10s, [&](std::size_t n) { cancelled = n; });
    io.poll();
    time->advance(9s);
    io.poll();
    REQUIRE_FALSE(cancelled);

    work.open();
    io.poll();

    CHECK(cancelled == 0u);
    CHECK(done == 4);
    CHECK(pool.is_closed());
    CHECK(time->waiting() == 0); // the grace period's wait was cancelled
}

TEST_CASE("async_shutdown cancels what runs past the grace period and reports how many",
          "[core][task_pool]")
{
    asio::io_context io;
    auto time = std::make_shared<tame::manual_time>();
    tame::task_pool pool{io, capacity(4, time)};
    std::vector<std::optional<error_code>> slow(3);
    for (auto& e : slow) {
        pool.async_submit(sleeper(e), [](error_code) {});
    }
    bool quick = false;
    pool.async_submit([&] { quick = true; }, [](error_code) {});
    error_code_record refused;
    pool.async_submit([] {}, refused.handler()); // waits for a slot, refused at close
    io.poll();
    std::optional<std::size_t> cancelled;
    std::size_t running_at_completion = 99;
    pool.async_shutdown(5s, [&](std::size_t n) {
        cancelled = n;
        running_at_completion = pool.running();
    });
    io.poll();
    time->advance(4s);
    io.poll();
    REQUIRE_FALSE(cancelled);

    time->advance(1s);
    io.poll();

    CHECK(cancelled == 3u);
    CHECK(running_at_completion == 0);
    CHECK(quick);
    for (const auto& e : slow) {
        CHECK(e == error_code{asio::error::operation_aborted});
    }
}

TEST_CASE("async_shutdown with an unbounded grace period waits for the work", "[core][task_pool]")
{
    asio::io_context io;
    auto time = std::make_shared<tame::manual_time>();
    tame::task_pool pool{io, capacity(2, time)};
    gate work{io};
    bool done = false;
    pool.async_submit(
        [&]() -> asio::awaitable<void> {
            co_await work.pass();
            done = true;
        },
        [](error_code) {});
    std::optional<std::size_t> from_seconds, from_nanoseconds;
    pool.async_shutdown(std::chrono::seconds::max(), [&](std::size_t n) { from_seconds = n; });
    pool.async_shutdown(std::chrono::nanoseconds::max(),
                        [&](std::size_t n) { from_nanoseconds = n; });
    io.poll();
    time->advance(24h * 365 * 50);
    io.poll();
    REQUIRE_FALSE(from_seconds);

    work.open();
    io.poll();

    CHECK(done);
    CHECK(from_seconds == 0u);
    CHECK(from_nanoseconds == 0u);
}

TEST_CASE("a second async_shutdown joins the first and reports the same count", "[core][task_pool]")
{
    asio::io_context io;
    auto time = std::make_shared<tame::manual_time>();
    tame::task_pool pool{io, capacity(2, time)};
    std::optional<error_code> slow;
    pool.async_submit(sleeper(slow), [](error_code) {});
    io.poll();
    std::optional<std::size_t> first, second, after;
    pool.async_shutdown(5s, [&](std::size_t n) { first = n; });
    pool.async_shutdown(1h, [&](std::size_t n) { second = n; }); // its grace is ignored
    io.poll();

    time->advance(5s);
    io.poll();
    pool.async_shutdown(0s, [&](std::size_t n) { after = n; });
    io.restart(); // the io_context ran out of work with the first shutdown
    io.poll();

    CHECK(first == 1u);
    CHECK(second == 1u);
    CHECK(after == 1u);
}

TEST_CASE("total cancellation of async_shutdown is ignored: it would cancel tasks",
          "[core][task_pool]")
{
    asio::io_context io;
    auto time = std::make_shared<tame::manual_time>();
    tame::task_pool pool{io, capacity(2, time)};
    std::optional<error_code> slow;
    pool.async_submit(sleeper(slow), [](error_code) {});
    io.poll();
    asio::cancellation_signal signal;
    std::optional<std::size_t> cancelled;
    pool.async_shutdown(
        1h, asio::bind_cancellation_slot(signal.slot(), [&](std::size_t n) { cancelled = n; }));
    io.poll();

    signal.emit(asio::cancellation_type::total);
    io.poll();
    CHECK_FALSE(cancelled);
    CHECK_FALSE(slow);
    time->advance(1h);
    io.poll();

    CHECK(cancelled == 1u);
}

TEST_CASE("cancelling async_shutdown ends its grace period at once", "[core][task_pool]")
{
    asio::io_context io;
    tame::task_pool pool{io, capacity(4)};
    std::optional<error_code> slow;
    pool.async_submit(sleeper(slow), [](error_code) {});
    io.poll();
    asio::cancellation_signal signal;
    std::optional<std::size_t> cancelled;
    pool.async_shutdown(
        1h, asio::bind_cancellation_slot(signal.slot(), [&](std::size_t n) { cancelled = n; }));
    io.poll();
    CHECK_FALSE(cancelled);

    signal.emit(asio::cancellation_type::terminal);
    io.run();

    CHECK(cancelled == 1u);
    CHECK(slow == error_code{asio::error::operation_aborted});
}

TEST_CASE("a submitter admitted before close() but not started by then is refused",
          "[core][task_pool]")
{
    // Its slot is granted before the shutdown, but its handler's executor (and
    // so the start of its task) only runs after: starting it then would escape
    // the shutdown's cancel_all().
    asio::io_context pool_io;
    asio::io_context caller_io;
    tame::task_pool pool{pool_io, capacity(1)};
    gate hold{pool_io};
    pool.async_submit([&]() -> asio::awaitable<void> { co_await hold.pass(); }, [](error_code) {});
    error_code_record late;
    bool ran = false;
    pool.async_submit([&] { ran = true; }, asio::bind_executor(caller_io, late.handler()));
    pool_io.poll();
    hold.open();
    pool_io.restart();
    pool_io.poll(); // the first task ends; the slot goes to the waiting submitter
    std::optional<std::size_t> cancelled;
    pool.async_shutdown(0s, [&](std::size_t n) { cancelled = n; });
    pool_io.restart();
    pool_io.poll();
    CHECK_FALSE(cancelled); // the drain waits for the undecided submission

    caller_io.run();
    pool_io.restart();
    pool_io.run();

    CHECK(late.ec == tame::errc::closed);
    CHECK_FALSE(ran);
    CHECK(cancelled == 0u);
}

TEST_CASE("cancellers leave the caller's slots when the io_context goes first", "[core][task_pool]")
{
    // The signals outlive the io_context: destroying or emitting them later must
    // not reach into the pool (ASan watches).
    asio::cancellation_signal run_signal;
    asio::cancellation_signal shutdown_signal;
    std::optional<error_code> slept;
    {
        asio::io_context io;
        tame::task_pool pool{io, capacity(1)};
        pool.async_run(sleeper(slept),
                       asio::bind_cancellation_slot(run_signal.slot(), [](std::exception_ptr) {}));
        pool.async_shutdown(
            1h, asio::bind_cancellation_slot(shutdown_signal.slot(), [](std::size_t) {}));
        io.poll();
    }
    run_signal.emit(asio::cancellation_type::terminal);
    shutdown_signal.emit(asio::cancellation_type::terminal);
    SUCCEED();
}

TEST_CASE("destroying a pool with tasks in flight and submitters waiting is safe",
          "[core][task_pool]")
{
    asio::io_context io;
    std::optional<error_code> slow;
    error_code_record waiting;
    {
        tame::task_pool pool{io, capacity(1)};
        pool.async_submit(sleeper(slow), [](error_code) {});
        pool.async_submit([] {}, waiting.handler());
        io.poll();
    }
    io.run();

    CHECK(slow == error_code{asio::error::operation_aborted});
    CHECK(waiting.ec == tame::errc::closed);
}

TEST_CASE("destroying the io_context with tasks never run leaks nothing", "[core][task_pool]")
{
    // ASan checks that the tasks' tickets, records and handlers are freed.
    asio::io_context io;
    int completions = 0;
    {
        tame::task_pool pool{io, capacity(2)};
        pool.async_submit([]() -> asio::awaitable<void> { co_return; },
                          [&](error_code) { ++completions; });
        pool.async_submit([] {}, [&](error_code) { ++completions; });
        pool.async_run([] { return 1; }, [&](std::exception_ptr, int) { ++completions; });
    }
    CHECK(completions == 0); // the io_context is destroyed without running them
}
