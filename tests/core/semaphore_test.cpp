#include <tame/semaphore.hpp>

#include <tame_test/acquire_result.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <new>
#include <random>
#include <stdexcept>
#include <type_traits>
#include <vector>

namespace asio = boost::asio;
using tame::error_code;
using tame_test::acquire_result;
using tame_test::record;

TEST_CASE("a free permit is delivered through the executor, never inside the call",
          "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 2};
    acquire_result result;

    sem.async_acquire(record(result));
    REQUIRE_FALSE(result.done());
    CHECK(sem.available() == 1);

    io.poll();

    CHECK(result.completions == 1);
    CHECK_FALSE(result.ec);
    CHECK(result.permit.count() == 1);
}

TEST_CASE("waiters are served in the order they arrived", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    auto held = sem.try_acquire();
    std::vector<int> order;

    for (int id : {1, 2, 3}) {
        // The permit dies when the handler returns, which wakes the next waiter.
        sem.async_acquire(1, [&order, id](error_code ec, tame::permit) {
            CHECK_FALSE(ec);
            order.push_back(id);
        });
    }
    io.poll();
    REQUIRE(order.empty());

    held.release();
    io.poll();

    CHECK(order == std::vector<int>{1, 2, 3});
    CHECK(sem.available() == 1);
}

TEST_CASE("a large waiter at the head is not overtaken by smaller ones behind it",
          "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 4};
    auto held = sem.try_acquire(3);
    acquire_result large;
    acquire_result small;

    sem.async_acquire(3, record(large));
    sem.async_acquire(1, record(small));
    io.poll();

    // One permit is free, enough for `small`, yet it waits behind `large`.
    CHECK(sem.available() == 1);
    CHECK_FALSE(large.done());
    CHECK_FALSE(small.done());

    held.release();
    io.poll();

    CHECK(large.permit.count() == 3);
    CHECK(small.permit.count() == 1);
}

TEST_CASE("acquiring zero permits fails with invalid_argument", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 2};
    acquire_result result;

    sem.async_acquire(0, record(result));
    io.poll();

    CHECK(result.ec == asio::error::invalid_argument);
    CHECK_FALSE(result.permit);
    CHECK(sem.available() == 2);
}

TEST_CASE("acquiring more permits than the capacity fails with invalid_argument",
          "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 2};
    acquire_result result;

    sem.async_acquire(3, record(result));
    io.poll();

    CHECK(result.ec == asio::error::invalid_argument);
    CHECK(sem.waiting() == 0);
}

TEST_CASE("a semaphore cannot be built or resized to zero permits", "[core][semaphore]")
{
    asio::io_context io;

    CHECK_THROWS_AS((tame::async_semaphore{io, 0}), std::invalid_argument);
    CHECK_THROWS_AS((tame::async_semaphore{io, tame::async_semaphore::max_capacity + 1}),
                    std::invalid_argument);
    tame::async_semaphore sem{io, 1};
    CHECK_THROWS_AS(sem.set_capacity(0), std::invalid_argument);
    CHECK(sem.capacity() == 1);
}

TEST_CASE("a permit is move-only and gives its permits back when destroyed", "[core][semaphore]")
{
    static_assert(!std::is_copy_constructible_v<tame::permit>);
    static_assert(!std::is_copy_assignable_v<tame::permit>);
    static_assert(std::is_nothrow_move_constructible_v<tame::permit>);
    asio::io_context io;
    tame::async_semaphore sem{io, 3};

    {
        auto p = sem.try_acquire(2);
        auto moved = std::move(p);
        CHECK_FALSE(p);
        CHECK(moved.count() == 2);
        CHECK(sem.available() == 1);
    }

    CHECK(sem.available() == 3);
}

TEST_CASE("release() wakes the next waiter and leaves the permit empty", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    auto held = sem.try_acquire();
    acquire_result waiter;
    sem.async_acquire(record(waiter));
    io.poll();

    held.release();
    held.release(); // a second release does nothing
    io.poll();

    CHECK_FALSE(held);
    CHECK(held.count() == 0);
    CHECK(waiter.permit.count() == 1);
    CHECK(sem.available() == 0);
}

TEST_CASE("moving a permit onto a held permit gives the held one back", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 3};
    auto a = sem.try_acquire(1);
    auto b = sem.try_acquire(2);

    a = std::move(b);

    CHECK(a.count() == 2);
    CHECK(sem.available() == 1);
}

TEST_CASE("try_acquire never jumps the queue, even when enough permits are free",
          "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 3};
    auto held = sem.try_acquire(2);
    acquire_result waiter;
    sem.async_acquire(3, record(waiter));
    io.poll();
    REQUIRE(sem.available() == 1);

    auto p = sem.try_acquire(1);

    CHECK_FALSE(p);
    CHECK(sem.available() == 1);
}

TEST_CASE("try_acquire of zero or too many permits returns an empty permit", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 2};

    CHECK_FALSE(sem.try_acquire(0));
    CHECK_FALSE(sem.try_acquire(3));
    CHECK(sem.available() == 2);
}

TEST_CASE("each cancellation type removes a waiting acquire with operation_aborted",
          "[core][semaphore]")
{
    const auto type = GENERATE(asio::cancellation_type::terminal, asio::cancellation_type::partial,
                               asio::cancellation_type::total);
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    auto held = sem.try_acquire();
    asio::cancellation_signal signal;
    acquire_result result;
    sem.async_acquire(asio::bind_cancellation_slot(signal.slot(), record(result)));
    io.poll();
    REQUIRE(sem.waiting() == 1);

    signal.emit(type);
    io.poll();

    CHECK(result.completions == 1);
    CHECK(result.ec == asio::error::operation_aborted);
    CHECK_FALSE(result.permit);
    CHECK(sem.waiting() == 0);
    held.release();
    CHECK(sem.available() == 1);
}

TEST_CASE("cancelling the head waiter lets the waiters behind it through", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 3};
    auto held = sem.try_acquire(2);
    asio::cancellation_signal signal;
    acquire_result large;
    acquire_result small;
    sem.async_acquire(3, asio::bind_cancellation_slot(signal.slot(), record(large)));
    sem.async_acquire(1, record(small));
    io.poll();
    REQUIRE_FALSE(small.done());

    signal.emit(asio::cancellation_type::terminal);
    io.poll();

    CHECK(large.ec == asio::error::operation_aborted);
    CHECK(small.permit.count() == 1);
}

TEST_CASE("a cancellation that arrives after the grant still delivers the permit",
          "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    auto held = sem.try_acquire();
    asio::cancellation_signal signal;
    acquire_result result;
    sem.async_acquire(asio::bind_cancellation_slot(signal.slot(), record(result)));
    io.poll();

    held.release(); // granted; the handler is queued but has not run
    signal.emit(asio::cancellation_type::terminal);
    io.poll();

    CHECK(result.completions == 1);
    CHECK_FALSE(result.ec);
    CHECK(result.permit.count() == 1);
    result.permit.release();
    CHECK(sem.available() == 1);
}

TEST_CASE("a completed acquire leaves nothing in its cancellation slot", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    asio::cancellation_signal signal;
    acquire_result result;
    auto acquire = [&] {
        sem.async_acquire(asio::bind_cancellation_slot(signal.slot(), record(result)));
    };

    SECTION("granted at once")
    {
        acquire();
        io.poll();
        CHECK(result.permit);
    }
    SECTION("granted after waiting")
    {
        auto held = sem.try_acquire();
        acquire();
        io.poll();
        held.release();
        io.poll();
        CHECK(result.permit);
    }
    SECTION("cancelled")
    {
        auto held = sem.try_acquire();
        acquire();
        signal.emit(asio::cancellation_type::total);
        io.poll();
        CHECK(result.ec == asio::error::operation_aborted);
    }
    SECTION("failed by close")
    {
        auto held = sem.try_acquire();
        acquire();
        sem.close();
        io.poll();
        CHECK(result.ec == tame::errc::closed);
    }

    CHECK(result.completions == 1);
    CHECK_FALSE(signal.slot().has_handler());
}

namespace {

/// A cancellation slot whose emplace() fails, as when memory runs out.
struct throwing_slot {
    bool is_connected() const noexcept { return true; }

    template <class Handler, class... Args>
    Handler& emplace(Args&&...)
    {
        throw std::bad_alloc{};
    }

    void clear() noexcept {}
};

struct handler_with_throwing_slot {
    int* calls;

    void operator()(error_code, tame::permit) const { ++*calls; }

    using cancellation_slot_type = throwing_slot;
    throwing_slot get_cancellation_slot() const noexcept { return {}; }
};

} // namespace

TEST_CASE("an acquire whose setup throws leaves nothing behind", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    int calls = 0;

    CHECK_THROWS_AS(sem.async_acquire(handler_with_throwing_slot{&calls}), std::bad_alloc);
    io.poll(); // no work was left behind: this returns, and the io_context stops

    CHECK(io.stopped());
    CHECK(calls == 0);
    CHECK(sem.waiting() == 0);
    CHECK(sem.available() == 1);
}

TEST_CASE("random acquire, cancel and release steps never lose a permit", "[core][semaphore]")
{
    constexpr std::size_t capacity = 8;
    asio::io_context io;
    tame::async_semaphore sem{io, capacity};
    std::mt19937 rng{20261128};
    struct pending {
        asio::cancellation_signal signal;
        acquire_result result;
    };
    std::vector<std::unique_ptr<pending>> ops;
    std::vector<tame::permit> held;
    const asio::cancellation_type types[] = {asio::cancellation_type::terminal,
                                             asio::cancellation_type::partial,
                                             asio::cancellation_type::total};

    for (int step = 0; step < 5000; ++step) {
        switch (rng() % 7) {
        case 0:
        case 1: {
            auto& op = ops.emplace_back(std::make_unique<pending>());
            const std::size_t n = 1 + rng() % capacity;
            sem.async_acquire(n,
                              asio::bind_cancellation_slot(op->signal.slot(), record(op->result)));
            break;
        }
        case 2:
            if (!ops.empty()) {
                ops[rng() % ops.size()]->signal.emit(types[rng() % 3]);
            }
            break;
        case 3:
            if (!held.empty()) {
                std::swap(held[rng() % held.size()], held.back());
                held.pop_back();
            }
            break;
        case 4:
            if (auto p = sem.try_acquire(1 + rng() % 2)) {
                held.push_back(std::move(p));
            }
            break;
        case 5:
            sem.set_capacity(1 + rng() % capacity);
            break;
        default:
            io.poll();
            io.restart();
            break;
        }
        // Move delivered permits into `held` so that they are released at random too.
        for (auto& op : ops) {
            if (op->result.permit) {
                held.push_back(std::move(op->result.permit));
            }
        }
    }
    for (auto& op : ops) {
        op->signal.emit(asio::cancellation_type::terminal);
    }
    held.clear();
    sem.set_capacity(capacity);
    io.poll();
    for (auto& op : ops) {
        op->result.permit.release();
    }

    for (auto& op : ops) {
        CHECK(op->result.completions == 1);
    }
    CHECK(sem.waiting() == 0);
    CHECK(sem.available() == capacity);
}

TEST_CASE("close completes the current waiters with closed", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    auto held = sem.try_acquire();
    acquire_result a;
    acquire_result b;
    sem.async_acquire(record(a));
    sem.async_acquire(record(b));
    io.poll();

    sem.close();
    io.poll();

    CHECK(a.ec == tame::errc::closed);
    CHECK(b.ec == tame::errc::closed);
    CHECK(sem.is_closed());
}

TEST_CASE("acquires after close complete with closed", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 2};
    sem.close();
    acquire_result result;

    sem.async_acquire(record(result));
    io.poll();

    CHECK(result.ec == tame::errc::closed);
    CHECK_FALSE(sem.try_acquire());
}

TEST_CASE("permits held at close are still given back", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 2};
    auto held = sem.try_acquire(2);

    sem.close();
    held.release();

    CHECK(sem.available() == 2);
}

TEST_CASE("growing the capacity grants waiters", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    auto held = sem.try_acquire();
    acquire_result a;
    acquire_result b;
    sem.async_acquire(record(a));
    sem.async_acquire(record(b));
    io.poll();

    sem.set_capacity(3);
    io.poll();

    CHECK(a.permit.count() == 1);
    CHECK(b.permit.count() == 1);
    CHECK(sem.capacity() == 3);
    CHECK(sem.available() == 0);
}

TEST_CASE("shrinking the capacity is absorbed by later releases", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 4};
    auto held = sem.try_acquire(3);
    acquire_result waiter;
    sem.async_acquire(1, record(waiter));
    io.poll();
    REQUIRE(waiter.permit); // the fourth permit was free
    waiter.permit.release();
    io.restart(); // the poll ran out of work

    sem.set_capacity(2); // removes the free permit now, owes one more
    CHECK(sem.available() == 0);
    acquire_result next;
    sem.async_acquire(2, record(next));
    held.release(); // three come back: one pays the debt, two go to `next`
    io.poll();

    CHECK(next.permit.count() == 2);
    next.permit.release();
    CHECK(sem.available() == 2);
    CHECK(sem.capacity() == 2);
}

TEST_CASE("growing after a shrink first cancels what the shrink still owed", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 4};
    auto held = sem.try_acquire(4);

    sem.set_capacity(2); // owes two
    sem.set_capacity(3); // now owes one
    held.release();

    CHECK(sem.available() == 3);
}

TEST_CASE("a shrink below a waiter's request fails that waiter with invalid_argument",
          "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 4};
    auto held = sem.try_acquire(1);
    acquire_result large;
    acquire_result small;
    sem.async_acquire(4, record(large));
    sem.async_acquire(1, record(small));
    io.poll();

    sem.set_capacity(2);
    io.poll();

    CHECK(large.ec == asio::error::invalid_argument);
    CHECK(small.permit.count() == 1);
}

TEST_CASE("a shrink fails at once the waiters that could never be granted", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 4};
    auto held = sem.try_acquire(4);
    acquire_result too_large;
    sem.async_acquire(3, record(too_large));
    io.poll();

    sem.set_capacity(2); // all four are held, so the shrink stays owed
    io.poll();

    CHECK(too_large.ec == asio::error::invalid_argument);
    CHECK(sem.waiting() == 0);
}

TEST_CASE("destroying the semaphore aborts its waiters", "[core][semaphore]")
{
    asio::io_context io;
    acquire_result result;
    tame::permit held;
    {
        tame::async_semaphore sem{io, 1};
        held = sem.try_acquire();
        sem.async_acquire(record(result));
        io.poll();
    }

    io.poll();
    held.release(); // outlives the semaphore; giving it back is safe

    CHECK(result.completions == 1);
    CHECK(result.ec == asio::error::operation_aborted);
}

TEST_CASE("a permit delivered to a handler that never runs is given back", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    bool ran = false;
    {
        asio::io_context other;
        sem.async_acquire(
            asio::bind_executor(other, [&](error_code, tame::permit) { ran = true; }));
        CHECK(sem.available() == 0);
    } // `other` is destroyed with the completion still queued

    CHECK_FALSE(ran);
    CHECK(sem.available() == 1);
}

TEST_CASE("acquire works with use_awaitable", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 2};
    std::size_t count = 0;

    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto p = co_await sem.async_acquire(2, asio::use_awaitable);
            count = p.count();
        },
        asio::detached);
    io.run();

    CHECK(count == 2);
    CHECK(sem.available() == 2);
}

TEST_CASE("acquire errors reach use_awaitable as system_error and as_tuple as codes",
          "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 2};
    error_code thrown;
    error_code returned;

    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            try {
                co_await sem.async_acquire(3, asio::use_awaitable);
            } catch (const boost::system::system_error& e) {
                thrown = e.code();
            }
            auto [ec, p] = co_await sem.async_acquire(3, asio::as_tuple(asio::use_awaitable));
            returned = ec;
        },
        asio::detached);
    io.run();

    CHECK(thrown == asio::error::invalid_argument);
    CHECK(returned == asio::error::invalid_argument);
}

TEST_CASE("acquire with deferred starts only when the operation is launched", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 2};
    acquire_result result;

    auto op = sem.async_acquire(2, asio::deferred);
    CHECK(sem.available() == 2);
    std::move(op)(record(result));
    io.poll();

    CHECK(result.permit.count() == 2);
}

TEST_CASE("acquire works with use_future", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};

    // use_future's handler runs on the system executor, not on `io`.
    auto future = sem.async_acquire(asio::use_future);
    auto p = future.get();

    CHECK(p.count() == 1);
    CHECK(sem.available() == 0);
}

TEST_CASE("acquire() takes a free permit without suspending the coroutine", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    bool acquired = false;
    // The same coroutine without the acquire: how many handlers it takes to run.
    asio::co_spawn(
        io, []() -> asio::awaitable<void> { co_return; }, asio::detached);
    const std::size_t baseline = io.poll();
    io.restart();

    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto p = co_await sem.acquire();
            acquired = static_cast<bool>(p);
        },
        asio::detached);
    const std::size_t handlers = io.poll();

    CHECK(acquired);
    CHECK(handlers == baseline);
}

TEST_CASE("acquire() waits for a permit and throws closed when the semaphore closes",
          "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    auto held = sem.try_acquire();
    bool first = false;
    error_code second;
    auto waiter = [&]() -> asio::awaitable<void> {
        auto p = co_await sem.acquire();
        first = static_cast<bool>(p);
        try {
            auto q = co_await sem.acquire(); // we hold the only permit
        } catch (const boost::system::system_error& e) {
            second = e.code();
        }
    };
    asio::co_spawn(io, waiter(), asio::detached);
    io.poll();
    REQUIRE_FALSE(first);

    held.release();
    io.poll();
    sem.close();
    io.poll();

    CHECK(first);
    CHECK(second == tame::errc::closed);
}

TEST_CASE("the handler runs on its associated strand", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    auto held = sem.try_acquire();
    auto strand = asio::make_strand(io);
    bool on_strand = false;
    sem.async_acquire(asio::bind_executor(
        strand, [&](error_code, tame::permit) { on_strand = strand.running_in_this_thread(); }));

    held.release();
    io.poll();

    CHECK(on_strand);
}

TEST_CASE("the handler runs on the io_context of its associated executor", "[core][semaphore]")
{
    asio::io_context io;
    asio::io_context other;
    tame::async_semaphore sem{io, 1};
    auto held = sem.try_acquire();
    acquire_result result;
    sem.async_acquire(asio::bind_executor(other, record(result)));

    held.release();
    io.poll();
    REQUIRE_FALSE(result.done());
    other.poll();

    CHECK(result.permit);
}

TEST_CASE("a waiting acquire keeps its io_context from running out of work", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    auto held = sem.try_acquire();
    acquire_result result;
    sem.async_acquire(record(result));

    io.poll();
    REQUIRE_FALSE(io.stopped());
    held.release();
    io.poll();

    CHECK(result.permit);
}

TEST_CASE("stats count acquisitions, waits, cancellations and the most waiters",
          "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 1};
    auto held = sem.try_acquire();
    asio::cancellation_signal signal;
    acquire_result granted;
    acquire_result cancelled;
    sem.async_acquire(record(granted));
    sem.async_acquire(asio::bind_cancellation_slot(signal.slot(), record(cancelled)));
    io.poll();

    signal.emit(asio::cancellation_type::terminal);
    held.release();
    io.poll();
    const auto stats = sem.stats();

    CHECK(stats.acquired == 2);
    CHECK(stats.waited == 2);
    CHECK(stats.cancelled == 1);
    CHECK(stats.max_waiting == 2);
    CHECK(stats.total_wait.count() > 0);
}

TEST_CASE("stats count every acquisition, including thousands without waiting", "[core][semaphore]")
{
    asio::io_context io;
    tame::async_semaphore sem{io, 2};

    // Fast acquisitions are tallied in batches of 256; the count must stay exact.
    for (int i = 0; i < 1000; ++i) {
        auto a = sem.try_acquire();
        auto b = sem.try_acquire();
    }

    CHECK(sem.stats().acquired == 2000);
    CHECK(sem.available() == 2);
}
