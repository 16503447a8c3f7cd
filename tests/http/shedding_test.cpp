// The server's adaptive shedding, on a manual clock and a CPU reading the test
// sets. The shedder allows max(1, passes x min_rt) requests in flight; the fast
// requests here take 0 ms on the manual clock, so once they are in the window
// it allows 1 x the CPU factor.
#include <tame/http/json.hpp>
#include <tame/http/request_context.hpp>
#include <tame/http/server.hpp>
#include <tame/manual_time.hpp>

#include <tame_test/http_harness.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace http = tame::http;
using namespace std::chrono_literals;
using tame_test::raw_client;
using tame_test::request_text;
using tame_test::stepped_server;
using tame_test::test_options;

namespace {

/// A server whose shedder reads `cpu`, with /slow (waits a minute on the
/// manual clock) and /fast.
struct shedding_server {
    std::shared_ptr<std::atomic<unsigned>> cpu = std::make_shared<std::atomic<unsigned>>(0);
    std::shared_ptr<tame::manual_time> time = std::make_shared<tame::manual_time>();
    std::shared_ptr<int> slow_started = std::make_shared<int>(0);
    stepped_server server{routes(), options(), time};
    std::deque<raw_client> slow_clients;

    http::server_options options()
    {
        auto o = test_options();
        tame::shedder_options shedding;
        shedding.cpu_usage = [cpu = cpu] { return cpu->load(); };
        o.shedding = shedding;
        o.retry_after = 3s;
        return o;
    }

    http::router routes()
    {
        return http::router{}
            .get("/slow",
                 [time = time, started = slow_started](
                     http::request_context& ctx) -> asio::awaitable<http::response> {
                     ++*started;
                     co_await time->async_wait_until(ctx.get_executor(), time->now() + 60s,
                                                     asio::as_tuple(asio::use_awaitable));
                     co_return http::json_response(boost::json::object{{"slept", 60}});
                 })
            .get("/fast", [](http::request_context&) -> asio::awaitable<http::response> {
                co_return http::json_response(boost::json::object{{"fast", true}});
            });
    }

    /// `n` requests waiting in /slow, and `settle` fast ones served meanwhile,
    /// which bring the moving average of the in-flight count near `n`.
    void load(int n, int settle = 30)
    {
        for (int i = 0; i < n; ++i) {
            slow_clients.emplace_back(server.port(), [this] { server.poll(); });
            slow_clients.back().send(request_text("GET", "/slow"));
        }
        REQUIRE(server.run_until([&] { return *slow_started == n; }));
        auto client = server.connect();
        for (int i = 0; i < settle; ++i) {
            client.send(request_text("GET", "/fast"));
            REQUIRE(client.read_response());
        }
        // Into the next bucket: the passes just made are in the window now.
        server.advance(100ms);
    }

    unsigned get(const std::string& target, http::response* out = nullptr)
    {
        auto client = server.connect();
        client.send(request_text("GET", target));
        auto res = client.read_response();
        REQUIRE(res);
        if (out != nullptr) {
            *out = *res;
        }
        return res->result_int();
    }
};

} // namespace

TEST_CASE("a busy CPU with more requests in flight than the server carries sheds with 503",
          "[http][shedding]")
{
    shedding_server s;
    s.load(3);

    s.cpu->store(900);
    http::response res;
    const auto status = s.get("/fast", &res);

    CHECK(status == 503);
    CHECK(res[http::field::retry_after] == "3");
    CHECK(s.server.server().metrics().shed(http::shed_reason::overload) == 1);
    CHECK(s.server.server().metrics().shed(http::shed_reason::max_in_flight) == 0);
}

TEST_CASE("the same load is served while the CPU is under the threshold", "[http][shedding]")
{
    shedding_server s;
    s.load(3);

    s.cpu->store(899);

    CHECK(s.get("/fast") == 200);
}

TEST_CASE("the built-in routes are never shed", "[http][shedding]")
{
    shedding_server s;
    s.load(3);

    s.cpu->store(1000);

    CHECK(s.get("/healthz") == 200);
    CHECK(s.get("/fast") == 503);
}

TEST_CASE("a server that shed stays hot for a second after its CPU falls", "[http][shedding]")
{
    shedding_server s;
    s.load(3);
    s.cpu->store(950);
    REQUIRE(s.get("/fast") == 503);

    s.cpu->store(100);
    const auto within = s.get("/fast");
    s.server.advance(1001ms);
    const auto after = s.get("/fast");

    CHECK(within == 503);
    CHECK(after == 200);
}

TEST_CASE("metrics count shed requests by reason and show the shedder's reading",
          "[http][shedding]")
{
    shedding_server s;
    s.load(3);
    s.cpu->store(950);
    s.get("/fast");

    http::response res;
    s.get("/metrics", &res);
    const auto& text = res.body();

    CHECK(text.find("tame_http_shed_total{reason=\"overload\"} 1\n") != std::string::npos);
    CHECK(text.find("tame_http_shed_total{reason=\"max_in_flight\"} 0\n") != std::string::npos);
    CHECK(text.find("tame_http_shedder_cpu_usage 950\n") != std::string::npos);
}

TEST_CASE("a server without shedding options sheds nothing however busy", "[http][shedding]")
{
    auto time = std::make_shared<tame::manual_time>();
    stepped_server server{
        http::router{}.get("/fast",
                           [](http::request_context&) -> asio::awaitable<http::response> {
                               co_return http::json_response(boost::json::object{{"fast", true}});
                           }),
        test_options(), time};
    auto client = server.connect();

    client.send(request_text("GET", "/fast"));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result_int() == 200);
    CHECK(server.server().metrics().shed(http::shed_reason::overload) == 0);
}
