#include <tame/redis/distributed_semaphore.hpp>

#include <tame_test/complete.hpp>
#include <tame_test/redis_server.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <catch2/catch.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <vector>

namespace asio = boost::asio;
namespace redis = tame::redis;
using namespace std::chrono_literals;
using tame::distributed_permit;
using tame::distributed_semaphore;
using tame::distributed_semaphore_stats;
using tame::error_code;
using tame_test::complete;
using tame_test::redis_server;
using tame_test::test_connection_options;

namespace {

tame::distributed_semaphore_options lease_of(std::chrono::milliseconds lease)
{
    tame::distributed_semaphore_options o;
    o.lease = lease;
    o.unavailable_timeout = 1500ms;
    return o;
}

/// Runs `io` until `done()` or `limit`; returns done().
bool run_until(asio::io_context& io, const std::function<bool()>& done,
               std::chrono::steady_clock::duration limit = 10s)
{
    const auto deadline = std::chrono::steady_clock::now() + limit;
    io.restart();
    while (!done() && std::chrono::steady_clock::now() < deadline) {
        io.run_one_for(5ms);
        io.restart();
    }
    return done();
}

/// Runs `io` for `d` of wall time.
void run_for(asio::io_context& io, std::chrono::steady_clock::duration d)
{
    const auto until = std::chrono::steady_clock::now() + d;
    run_until(
        io, [&] { return std::chrono::steady_clock::now() >= until; }, d + 1s);
}

std::tuple<error_code, distributed_permit> acquire(asio::io_context& io, distributed_semaphore& s,
                                                   std::size_t n = 1)
{
    return complete<error_code, distributed_permit>(io, s.async_acquire(n, asio::deferred));
}

distributed_semaphore_stats stats(asio::io_context& io, distributed_semaphore& s)
{
    auto [ec, st] =
        complete<error_code, distributed_semaphore_stats>(io, s.async_stats(asio::deferred));
    REQUIRE_FALSE(ec);
    return st;
}

/// An acquire started now, whose outcome the test looks at later.
struct pending_acquire {
    std::optional<error_code> ec;
    distributed_permit permit;
    asio::cancellation_signal cancel;

    void start(distributed_semaphore& s, std::size_t n = 1)
    {
        s.async_acquire(n, asio::bind_cancellation_slot(cancel.slot(),
                                                        [this](error_code e, distributed_permit p) {
                                                            ec = e;
                                                            permit = std::move(p);
                                                        }));
    }
    bool done() const { return ec.has_value(); }
};

/// Three processes' worth of clients: a connection and a semaphore object each.
struct replicas {
    replicas(asio::io_context& io, const redis_server& server, std::size_t capacity,
             std::chrono::milliseconds lease = 10s)
    {
        for (int i = 0; i < 3; ++i) {
            conns.push_back(std::make_unique<redis::connection>(io.get_executor(),
                                                                test_connection_options(server)));
            sems.push_back(std::make_unique<distributed_semaphore>(*conns.back(), "jobs", capacity,
                                                                   lease_of(lease)));
        }
    }
    std::vector<std::unique_ptr<redis::connection>> conns;
    std::vector<std::unique_ptr<distributed_semaphore>> sems;
};

} // namespace

TEST_CASE("an uncontended acquire is granted and its release gives the permit back",
          "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    distributed_semaphore sem{conn, "jobs", 3};

    auto [ec, permit] = acquire(io, sem, 2);
    const auto held = stats(io, sem);
    auto [release_ec] = complete<error_code>(io, permit.async_release(asio::deferred));
    const auto after = stats(io, sem);

    CHECK_FALSE(ec);
    CHECK(held.capacity == 3);
    CHECK(held.used == 2);
    CHECK(held.holders == 1);
    CHECK_FALSE(release_ec);
    CHECK_FALSE(permit);
    CHECK(after.used == 0);
}

TEST_CASE("fencing tokens strictly increase across grants and processes",
          "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    replicas r{io, server, 1};
    std::vector<std::uint64_t> fences;

    for (int i = 0; i < 9; ++i) {
        auto [ec, permit] = acquire(io, *r.sems[static_cast<std::size_t>(i) % 3]);
        REQUIRE_FALSE(ec);
        fences.push_back(permit.fence());
    }

    for (std::size_t i = 1; i < fences.size(); ++i) {
        CHECK(fences[i] > fences[i - 1]);
    }
}

TEST_CASE("waiters on several processes are granted in the order they queued",
          "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    replicas r{io, server, 1};
    auto [ec, holder] = acquire(io, *r.sems[0]);
    std::vector<int> order;
    std::vector<std::unique_ptr<pending_acquire>> waiters;

    for (int i = 0; i < 5; ++i) {
        waiters.push_back(std::make_unique<pending_acquire>());
        waiters.back()->start(*r.sems[static_cast<std::size_t>(i) % 3]);
        REQUIRE(run_until(io, [&] { return stats(io, *r.sems[0]).waiting == waiters.size(); }));
    }
    holder.release();
    for (int granted = 0; granted < 5; ++granted) {
        REQUIRE(run_until(io, [&] {
            for (std::size_t i = 0; i < waiters.size(); ++i) {
                if (waiters[i]->permit) {
                    return true;
                }
            }
            return false;
        }));
        for (std::size_t i = 0; i < waiters.size(); ++i) {
            if (waiters[i]->permit) {
                order.push_back(static_cast<int>(i));
                waiters[i]->permit.release();
            }
        }
    }

    CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("a large request at the head of the queue is not overtaken by a smaller one",
          "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    replicas r{io, server, 3};
    auto [ec, holder] = acquire(io, *r.sems[0], 2);
    pending_acquire large;
    pending_acquire small;

    large.start(*r.sems[1], 3);
    REQUIRE(run_until(io, [&] { return stats(io, *r.sems[0]).waiting == 1; }));
    small.start(*r.sems[2], 1);
    REQUIRE(run_until(io, [&] { return stats(io, *r.sems[0]).waiting == 2; }));
    run_for(io, 200ms);
    const bool small_overtook = small.done();
    holder.release();
    REQUIRE(run_until(io, [&] { return large.done(); }));
    const bool small_after_large = !small.done();
    large.permit.release();

    CHECK_FALSE(small_overtook);
    CHECK(small_after_large);
    CHECK(run_until(io, [&] { return small.done(); }));
}

TEST_CASE("try_acquire takes free permits and never queues", "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    distributed_semaphore sem{conn, "jobs", 1};

    auto [ec1, first] =
        complete<error_code, distributed_permit>(io, sem.async_try_acquire(1, asio::deferred));
    auto [ec2, second] =
        complete<error_code, distributed_permit>(io, sem.async_try_acquire(1, asio::deferred));

    CHECK_FALSE(ec1);
    CHECK(first);
    CHECK_FALSE(ec2);
    CHECK_FALSE(second);
    CHECK(stats(io, sem).waiting == 0);
}

TEST_CASE("an acquire of no permits or of more than the capacity fails with invalid_argument",
          "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    distributed_semaphore sem{conn, "jobs", 2};

    auto [zero_ec, zero] = acquire(io, sem, 0);
    auto [big_ec, big] = acquire(io, sem, 3);

    CHECK(zero_ec == asio::error::invalid_argument);
    CHECK(big_ec == asio::error::invalid_argument);
    CHECK(stats(io, sem).waiting == 0);
}

TEST_CASE("set_capacity grants the waiters that now fit, for every process",
          "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    replicas r{io, server, 1};
    auto [ec, holder] = acquire(io, *r.sems[0]);
    pending_acquire a;
    pending_acquire b;
    a.start(*r.sems[1]);
    b.start(*r.sems[2]);
    REQUIRE(run_until(io, [&] { return stats(io, *r.sems[0]).waiting == 2; }));

    auto [set_ec] = complete<error_code>(io, r.sems[0]->async_set_capacity(3, asio::deferred));

    CHECK_FALSE(set_ec);
    CHECK(run_until(io, [&] { return a.done() && b.done(); }));
    CHECK(stats(io, *r.sems[1]).capacity == 3);
    CHECK(stats(io, *r.sems[1]).used == 3);
}

TEST_CASE("a cancelled waiting acquire leaves the queue and completes with operation_aborted",
          "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    replicas r{io, server, 1};
    auto [ec, holder] = acquire(io, *r.sems[0]);
    pending_acquire waiter;
    waiter.start(*r.sems[1]);
    REQUIRE(run_until(io, [&] { return stats(io, *r.sems[0]).waiting == 1; }));

    waiter.cancel.emit(asio::cancellation_type::terminal);
    REQUIRE(run_until(io, [&] { return waiter.done(); }));
    const auto after = stats(io, *r.sems[0]);

    CHECK(waiter.ec == asio::error::operation_aborted);
    CHECK_FALSE(waiter.permit);
    CHECK(after.waiting == 0);
    CHECK(after.used == 1);
}

TEST_CASE("a permit granted while its acquire was being cancelled is given back",
          "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    replicas r{io, server, 1};

    for (int round = 0; round < 20; ++round) {
        auto [ec, holder] = acquire(io, *r.sems[0]);
        REQUIRE_FALSE(ec);
        pending_acquire waiter;
        waiter.start(*r.sems[1]);
        REQUIRE(run_until(io, [&] { return stats(io, *r.sems[0]).waiting == 1; }));
        // The release and the cancellation race: the grant may be made first.
        holder.release();
        io.restart();
        for (int i = 0; i < round % 4; ++i) {
            io.poll_one();
        }
        waiter.cancel.emit(asio::cancellation_type::terminal);
        REQUIRE(run_until(io, [&] { return waiter.done(); }));
        waiter.permit.release();
        REQUIRE(run_until(io, [&] {
            const auto s = stats(io, *r.sems[2]);
            return s.used == 0 && s.waiting == 0;
        }));
    }
}

TEST_CASE("destroying a semaphore with acquires on their way completes them with "
          "operation_aborted and leaves nothing in Redis",
          "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    replicas r{io, server, 1};
    auto [ec, holder] = acquire(io, *r.sems[0]);
    auto doomed = std::make_unique<distributed_semaphore>(*r.conns[1], "jobs", 1);
    pending_acquire queued;     // its look has come back: it waits in the queue
    pending_acquire on_its_way; // its look is still on its way
    queued.start(*doomed);
    REQUIRE(run_until(io, [&] { return stats(io, *r.sems[0]).waiting == 1; }));
    on_its_way.start(*doomed);

    doomed.reset();
    REQUIRE(run_until(io, [&] { return queued.done() && on_its_way.done(); }));
    holder.release();

    CHECK(queued.ec == asio::error::operation_aborted);
    CHECK(on_its_way.ec == asio::error::operation_aborted);
    CHECK(run_until(io, [&] {
        const auto s = stats(io, *r.sems[2]);
        return s.used == 0 && s.waiting == 0;
    }));
}

TEST_CASE("set_capacity completes on its handler's executor and can be cancelled",
          "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    distributed_semaphore sem{conn, "jobs", 1};
    auto strand = asio::make_strand(io);
    std::optional<bool> on_strand;
    asio::cancellation_signal cancel;
    std::optional<error_code> cancelled;

    sem.async_set_capacity(2, asio::bind_executor(strand, [&](error_code) {
                               on_strand = strand.running_in_this_thread();
                           }));
    sem.async_set_capacity(
        3, asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec) { cancelled = ec; }));
    cancel.emit(asio::cancellation_type::terminal);
    REQUIRE(run_until(io, [&] { return on_strand.has_value() && cancelled.has_value(); }));

    CHECK(on_strand == true);
    CHECK(cancelled == asio::error::operation_aborted);
}

TEST_CASE("a permit renews its lease for as long as it lives", "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    replicas r{io, server, 1, 300ms};
    auto [ec, permit] = acquire(io, *r.sems[0]);

    run_for(io, 1200ms); // four leases
    auto [try_ec, other] = complete<error_code, distributed_permit>(
        io, r.sems[1]->async_try_acquire(1, asio::deferred));

    CHECK_FALSE(permit.is_lost());
    CHECK_FALSE(other);
    CHECK(stats(io, *r.sems[0]).holders == 1);
}

TEST_CASE("a frozen holder loses its lease to the next waiter and is told so when it wakes",
          "[redis][distributed_semaphore]")
{
    // Two processes: the holder's io_context is not run for three leases, as
    // when its process is stopped (SIGSTOP); the waiter's runs.
    redis_server server;
    asio::io_context frozen_io;
    asio::io_context live_io;
    redis::connection frozen_conn{frozen_io.get_executor(), test_connection_options(server)};
    redis::connection live_conn{live_io.get_executor(), test_connection_options(server)};
    distributed_semaphore frozen_sem{frozen_conn, "jobs", 1, lease_of(300ms)};
    distributed_semaphore live_sem{live_conn, "jobs", 1, lease_of(300ms)};
    auto [ec, held] = acquire(frozen_io, frozen_sem);
    REQUIRE_FALSE(ec);
    std::optional<bool> lost_bound;
    asio::steady_timer work{frozen_io, 1h};
    work.async_wait(
        held.lost().bind([&](error_code e) { lost_bound = e == asio::error::operation_aborted; }));

    const auto started = std::chrono::steady_clock::now();
    auto [live_ec, taken] = acquire(live_io, live_sem);
    const auto waited = std::chrono::steady_clock::now() - started;
    run_until(frozen_io, [&] { return lost_bound.has_value(); });

    CHECK_FALSE(live_ec);
    CHECK(taken.fence() > held.fence());
    CHECK(waited < 300ms + 1s);
    CHECK(held.is_lost());
    CHECK(lost_bound == true);
}

TEST_CASE("a holder whose process dies gives its permits back within one lease",
          "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    auto dead_conn =
        std::make_unique<redis::connection>(io.get_executor(), test_connection_options(server));
    auto dead_sem = std::make_unique<distributed_semaphore>(*dead_conn, "jobs", 2, lease_of(400ms));
    redis::connection live_conn{io.get_executor(), test_connection_options(server)};
    distributed_semaphore live_sem{live_conn, "jobs", 2, lease_of(400ms)};
    auto [ec, held] = acquire(io, *dead_sem, 2);
    REQUIRE_FALSE(ec);

    // Dies: its connection closes, nothing is released or renewed.
    dead_conn->close();
    const auto died = std::chrono::steady_clock::now();
    auto [live_ec, taken] = acquire(io, live_sem, 2);
    const auto waited = std::chrono::steady_clock::now() - died;

    CHECK_FALSE(live_ec);
    CHECK(waited < 400ms + 1s);
    held.release();
    dead_sem.reset();
}

TEST_CASE("a FLUSHALL makes the holders lose their leases", "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    distributed_semaphore sem{conn, "jobs", 1, 300ms}; // {conn, name, capacity, lease}
    auto [ec, permit] = acquire(io, sem);

    complete<error_code, redis::reply>(io, conn.async_exec({"FLUSHALL"}, asio::deferred));

    CHECK(run_until(
        io, [&] { return permit.is_lost(); }, 2s));
}

TEST_CASE("an acquire fails with redis_unavailable within its timeout when Redis is down",
          "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    distributed_semaphore sem{conn, "jobs", 1, lease_of(1s)};
    server.stop();

    const auto started = std::chrono::steady_clock::now();
    auto [ec, permit] = acquire(io, sem);
    const auto took = std::chrono::steady_clock::now() - started;

    CHECK(ec == tame::errc::redis_unavailable);
    CHECK(took < 1500ms + 1s);
}

TEST_CASE("a waiting acquire survives a restart of Redis and is granted afterwards",
          "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    replicas r{io, server, 1};
    auto [ec, holder] = acquire(io, *r.sems[0]);
    const auto first_fence = holder.fence();
    pending_acquire waiter;
    waiter.start(*r.sems[1]);
    REQUIRE(run_until(io, [&] { return stats(io, *r.sems[0]).waiting == 1; }));

    server.stop();
    run_for(io, 200ms);
    server.start();
    holder.release();

    REQUIRE(run_until(io, [&] { return waiter.done(); }));
    CHECK_FALSE(*waiter.ec);
    CHECK(waiter.permit.fence() > first_fence);
}

TEST_CASE("permits are conserved under storms of acquires, cancellations and releases on three "
          "connections",
          "[redis][distributed_semaphore]")
{
    redis_server server;
    asio::io_context io;
    constexpr std::size_t capacity = 4;
    replicas r{io, server, capacity};
    std::mt19937 random{20261206};
    std::size_t held = 0;
    std::size_t most_held = 0;
    int finished = 0;
    int granted = 0;
    constexpr int total = 600;

    struct task {
        task(asio::io_context& io, std::size_t n) : timer{io}, n{n} {}
        pending_acquire acquire;
        asio::steady_timer timer;
        std::size_t n;
    };
    std::vector<std::unique_ptr<task>> tasks;
    for (int i = 0; i < total; ++i) {
        auto t = std::make_unique<task>(io, 1 + random() % 2);
        auto* raw = t.get();
        auto& sem = *r.sems[random() % 3];
        const auto hold_for = std::chrono::milliseconds{random() % 5};
        sem.async_acquire(raw->n, asio::bind_cancellation_slot(
                                      raw->acquire.cancel.slot(),
                                      [&, raw, hold_for](error_code ec, distributed_permit p) {
                                          if (ec) {
                                              ++finished;
                                              return;
                                          }
                                          ++granted;
                                          held += raw->n;
                                          most_held = std::max(most_held, held);
                                          raw->timer.expires_after(hold_for);
                                          raw->timer.async_wait(
                                              [&, raw, p = std::move(p)](error_code) mutable {
                                                  held -= raw->n;
                                                  p.release();
                                                  ++finished;
                                              });
                                      }));
        if (random() % 4 == 0) {
            // Cancelled soon, waiting or not.
            auto cancel_timer =
                std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds{random() % 20});
            cancel_timer->async_wait([raw, cancel_timer](error_code) {
                raw->acquire.cancel.emit(asio::cancellation_type::terminal);
            });
        }
        tasks.push_back(std::move(t));
    }

    REQUIRE(run_until(
        io, [&] { return finished == total; }, 60s));
    // The last releases travel on three connections, and the stats script on
    // one of them may overtake the others': Redis has every permit back soon.
    distributed_semaphore_stats after;
    const bool all_back = run_until(io, [&] {
        after = stats(io, *r.sems[0]);
        return after.used == 0 && after.holders == 0 && after.waiting == 0;
    });

    CHECK(most_held <= capacity);
    CHECK(granted > total / 2);
    CHECK(all_back);
    CHECK(after.used == 0);
    CHECK(after.holders == 0);
    CHECK(after.waiting == 0);
}
