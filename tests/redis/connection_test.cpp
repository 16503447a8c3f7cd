#include <tame/redis/connection.hpp>

#include <tame_test/complete.hpp>
#include <tame_test/redis_server.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace redis = tame::redis;
using namespace std::chrono_literals;
using tame::error_code;
using tame_test::complete;
using tame_test::redis_server;
using tame_test::test_connection_options;

namespace {

std::tuple<error_code, redis::reply> exec(asio::io_context& io, redis::connection& conn,
                                          redis::command cmd)
{
    return complete<error_code, redis::reply>(io, conn.async_exec(std::move(cmd), asio::deferred));
}

} // namespace

TEST_CASE("a command is answered with its reply", "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};

    auto [set_ec, set] = exec(io, conn, {"SET", "greeting", "hello"});
    auto [get_ec, got] = exec(io, conn, {"GET", "greeting"});

    CHECK_FALSE(set_ec);
    CHECK(set.text() == "OK");
    CHECK_FALSE(get_ec);
    CHECK(got.type() == redis::reply::kind::string);
    CHECK(got.text() == "hello");
}

TEST_CASE("commands issued together are pipelined and answered in order", "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    std::vector<std::int64_t> answers;

    for (int i = 0; i < 500; ++i) {
        conn.async_exec({"INCR", "counter"}, [&](error_code ec, redis::reply r) {
            CHECK_FALSE(ec);
            answers.push_back(r.integer());
        });
    }
    for (int i = 0; i < 1000 && answers.size() < 500; ++i) {
        io.run_one_for(10ms);
    }

    REQUIRE(answers.size() == 500);
    for (std::size_t i = 0; i < answers.size(); ++i) {
        CHECK(answers[i] == static_cast<std::int64_t>(i + 1));
    }
}

TEST_CASE("a server error reply completes with redis_error and says what went wrong",
          "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};

    auto [ec, r] = exec(io, conn, {"NOSUCHCOMMAND", "x"});

    CHECK(ec == tame::errc::redis_error);
    CHECK(r.is_error());
    CHECK(r.text().find("unknown command") != std::string::npos);
}

TEST_CASE("a script runs by its hash, and by its source once after the server lost it",
          "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    const redis::script add{"return tonumber(ARGV[1]) + tonumber(ARGV[2])"};
    auto eval = [&] {
        return complete<error_code, redis::reply>(
            io, conn.async_eval(add, {}, {"2", "3"}, asio::deferred));
    };

    exec(io, conn, {"PING"}); // connected (the handshake counts too)
    const auto before = conn.stats().commands;

    auto [first_ec, first] = eval(); // NOSCRIPT, then EVAL: two commands
    const auto after_first = conn.stats().commands - before;
    auto [second_ec, second] = eval(); // EVALSHA alone
    const auto after_second = conn.stats().commands - before;
    exec(io, conn, {"SCRIPT", "FLUSH"});
    auto [third_ec, third] = eval(); // lost again: NOSCRIPT, then EVAL
    const auto after_third = conn.stats().commands - before;

    CHECK_FALSE(first_ec);
    CHECK(first.integer() == 5);
    CHECK(after_first == 2);
    CHECK_FALSE(second_ec);
    CHECK(second.integer() == 5);
    CHECK(after_second == 3);
    CHECK_FALSE(third_ec);
    CHECK(third.integer() == 5);
    CHECK(after_third == 6);
}

TEST_CASE("a command to a port nobody listens on fails with redis_unavailable within the connect "
          "timeout",
          "[redis][connection]")
{
    asio::io_context io;
    redis::connection_options o;
    o.url = {"127.0.0.1", tame_test::free_loopback_port(), 0};
    o.connect_timeout = 300ms;
    redis::connection conn{io.get_executor(), o};

    const auto started = std::chrono::steady_clock::now();
    auto [ec, r] = exec(io, conn, {"PING"});
    const auto took = std::chrono::steady_clock::now() - started;

    CHECK(ec == tame::errc::redis_unavailable);
    CHECK(took < 2s);
}

TEST_CASE("a command to a frozen server fails with redis_unavailable after the reply timeout",
          "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    exec(io, conn, {"PING"});
    server.pause();

    auto [ec, r] = exec(io, conn, {"PING"});
    server.resume();
    auto [after_ec, after] = exec(io, conn, {"PING"});

    CHECK(ec == tame::errc::redis_unavailable);
    CHECK_FALSE(after_ec);
    CHECK(after.text() == "PONG");
}

TEST_CASE("a connection survives a restart of the server", "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    exec(io, conn, {"SET", "kept", "yes"});

    server.stop();
    auto [down_ec, down] = exec(io, conn, {"GET", "kept"});
    server.start();
    auto [up_ec, up] = exec(io, conn, {"GET", "kept"});

    CHECK(down_ec == tame::errc::redis_unavailable);
    CHECK_FALSE(up_ec);
    CHECK(up.text() == "yes");
    CHECK(conn.stats().connects >= 2);
}

TEST_CASE("a command sent while the restarted server loads its data waits for it or fails with "
          "redis_unavailable, never with LOADING",
          "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    // Enough data that loading the append-only file takes a moment.
    for (int batch = 0; batch < 20; ++batch) {
        redis::command mset{"MSET"};
        for (int i = 0; i < 5000; ++i) {
            mset.push_back("k" + std::to_string(batch) + ":" + std::to_string(i));
            mset.push_back(std::string(64, 'v'));
        }
        exec(io, conn, std::move(mset));
    }

    server.stop();
    std::vector<error_code> outcomes;
    std::vector<std::string> texts;
    std::thread restart{[&] { server.start(); }};
    for (int i = 0; i < 50; ++i) {
        auto [ec, r] = exec(io, conn, {"GET", "k0:0"});
        outcomes.push_back(ec);
        texts.push_back(r.text());
        if (!ec) {
            break;
        }
    }
    restart.join();

    REQUIRE_FALSE(outcomes.empty());
    CHECK_FALSE(outcomes.back());
    CHECK(texts.back() == std::string(64, 'v'));
    for (std::size_t i = 0; i + 1 < outcomes.size(); ++i) {
        CHECK(outcomes[i] == tame::errc::redis_unavailable);
    }
}

TEST_CASE("a cancelled command completes with operation_aborted and the next one gets its own "
          "reply",
          "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    asio::cancellation_signal cancel;
    std::optional<error_code> blocked;

    // BLPOP waits 0.3 s on the server for a list that never fills.
    conn.async_exec({"BLPOP", "never", "0.3"},
                    asio::bind_cancellation_slot(
                        cancel.slot(), [&](error_code ec, redis::reply) { blocked = ec; }));
    io.run_for(50ms);
    cancel.emit(asio::cancellation_type::terminal);
    io.restart();
    io.run_for(20ms);
    const auto cancelled_at_once = blocked.has_value();
    auto [ec, r] = exec(io, conn, {"ECHO", "mine"});

    CHECK(cancelled_at_once);
    CHECK(blocked == asio::error::operation_aborted);
    CHECK_FALSE(ec);
    CHECK(r.text() == "mine");
}

TEST_CASE("a command completes on its handler's associated executor", "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    auto strand = asio::make_strand(io);
    std::optional<bool> on_strand;

    conn.async_exec({"PING"}, asio::bind_executor(strand, [&](error_code, redis::reply) {
                        on_strand = strand.running_in_this_thread();
                    }));
    for (int i = 0; i < 1000 && !on_strand; ++i) {
        io.run_one_for(10ms);
    }

    CHECK(on_strand == true);
}

TEST_CASE("a command completes through use_future on a thread running the connection",
          "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    auto guard = asio::make_work_guard(io);
    std::thread runner{[&] { io.run(); }};
    {
        redis::connection conn{io.get_executor(), test_connection_options(server)};
        auto reply = conn.async_exec({"ECHO", "future"}, asio::use_future);

        CHECK(reply.get().text() == "future");
    }
    guard.reset();
    runner.join();
}

TEST_CASE("a subscription receives what is published on its channel", "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};

    auto [sub_ec, sub] =
        complete<error_code, redis::subscription>(io, conn.async_subscribe("news", asio::deferred));
    REQUIRE_FALSE(sub_ec);
    exec(io, conn, {"PUBLISH", "news", "first"});
    exec(io, conn, {"PUBLISH", "news", "second"});
    auto [ec1, m1] = complete<error_code, redis::message>(io, sub.async_receive(asio::deferred));
    auto [ec2, m2] = complete<error_code, redis::message>(io, sub.async_receive(asio::deferred));

    CHECK(m1.channel == "news");
    CHECK(m1.payload == "first");
    CHECK(m2.payload == "second");
    CHECK_FALSE(m1.after_gap);
}

TEST_CASE("a subscription hears of a gap after its connection was re-established, and goes on "
          "receiving",
          "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    auto [sub_ec, sub] =
        complete<error_code, redis::subscription>(io, conn.async_subscribe("news", asio::deferred));
    REQUIRE_FALSE(sub_ec);

    server.stop();
    server.start();
    auto [gap_ec, gap] =
        complete<error_code, redis::message>(io, sub.async_receive(asio::deferred), 20s);
    // Published until the re-subscription has reached the server.
    std::optional<redis::message> next;
    sub.async_receive([&](error_code, redis::message m) { next = std::move(m); });
    for (int i = 0; i < 200 && !next; ++i) {
        exec(io, conn, {"PUBLISH", "news", "again"});
        io.restart();
        io.run_for(10ms);
    }

    CHECK(gap.after_gap);
    REQUIRE(next);
    CHECK(next->payload == "again");
}

TEST_CASE("a closed connection completes its waiting receive and later commands with closed",
          "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    auto [sub_ec, sub] =
        complete<error_code, redis::subscription>(io, conn.async_subscribe("news", asio::deferred));
    std::optional<error_code> received;
    sub.async_receive([&](error_code ec, redis::message) { received = ec; });

    conn.close();
    auto [ec, r] = exec(io, conn, {"PING"});
    io.restart();
    io.run_for(50ms);

    CHECK(ec == tame::errc::closed);
    CHECK(received == tame::errc::closed);
}

TEST_CASE("a server that answers a new connection with an error is tried again later, not given "
          "up on",
          "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection admin{io.get_executor(), test_connection_options(server)};
    redis::connection late{io.get_executor(), test_connection_options(server)};
    exec(io, admin, {"CONFIG", "SET", "maxclients", "1"});

    // Redis accepts the socket, says "-ERR max number of clients reached" and closes it.
    auto [refused_ec, refused] = exec(io, late, {"PING"});
    exec(io, admin, {"CONFIG", "SET", "maxclients", "100"});
    auto [ec, r] = exec(io, late, {"PING"});

    CHECK(refused_ec == tame::errc::redis_unavailable);
    CHECK_FALSE(ec);
    CHECK(r.text() == "PONG");
}

TEST_CASE("a subscription whose server stops answering is re-established and hears of a gap",
          "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    auto [sub_ec, sub] =
        complete<error_code, redis::subscription>(io, conn.async_subscribe("news", asio::deferred));
    REQUIRE_FALSE(sub_ec);
    const auto connects = conn.stats().connects;

    // Frozen past the keep-alive PING's reply timeout: the socket is taken for dead.
    server.pause();
    std::optional<redis::message> gap;
    sub.async_receive([&](error_code, redis::message m) { gap = std::move(m); });
    const auto frozen_until = std::chrono::steady_clock::now() + 1500ms;
    while (std::chrono::steady_clock::now() < frozen_until) {
        io.run_one_for(10ms);
    }
    server.resume();
    for (int i = 0; i < 1000 && !gap; ++i) {
        io.run_one_for(10ms);
    }

    REQUIRE(gap);
    CHECK(gap->after_gap);
    CHECK(gap->channel == "news");
    CHECK(conn.stats().connects > connects);
}

TEST_CASE("a cancelled subscribe completes with operation_aborted and leaves no subscription",
          "[redis][connection]")
{
    redis_server server;
    asio::io_context io;
    redis::connection conn{io.get_executor(), test_connection_options(server)};
    exec(io, conn, {"PING"});
    asio::cancellation_signal cancel;
    std::optional<error_code> outcome;

    conn.async_subscribe(
        "news", asio::bind_cancellation_slot(
                    cancel.slot(), [&](error_code ec, redis::subscription) { outcome = ec; }));
    cancel.emit(asio::cancellation_type::terminal);
    for (int i = 0; i < 500 && (!outcome || conn.stats().subscribed != 0); ++i) {
        io.run_one_for(10ms);
    }

    CHECK(outcome == asio::error::operation_aborted);
    CHECK(conn.stats().subscribed == 0);
}

TEST_CASE("a Redis URL is read with its host, port and database", "[redis][url]")
{
    const auto u = redis::parse_url("redis://cache.internal:6380/3");

    CHECK(u.host == "cache.internal");
    CHECK(u.port == 6380);
    CHECK(u.db == 3);
    CHECK(redis::parse_url("redis://10.0.0.1").port == 6379);
}

TEST_CASE("a malformed Redis URL is refused with a message that names it", "[redis][url]")
{
    error_code ec;
    redis::parse_url("redis://host:99999", ec);
    CHECK(ec == tame::errc::invalid_url);
    redis::parse_url("rediss://host", ec);
    CHECK(ec == tame::errc::unsupported_scheme);
    redis::parse_url("redis://host/db", ec);
    CHECK(ec == tame::errc::invalid_url);
    redis::parse_url("host:6379", ec);
    CHECK(ec);

    CHECK_THROWS_WITH(redis::parse_url("redis://:6379"),
                      Catch::Contains("bad Redis URL 'redis://:6379'"));
}
