#include "hosted_service.hpp"

#include "diagnose/service.hpp"

#include <tame/http/json.hpp>
#include <tame/http/request_context.hpp>
#include <tame/manual_time.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

using namespace apps_test;
using samples::diagnose_options;
using samples::diagnose_service;
using diagnose_host = hosted_service<diagnose_service>;

namespace {

/// The service's clock in these tests: it moves only when a test advances it,
/// so a deadline passes when the test says so, and never otherwise.
std::shared_ptr<tame::manual_time> manual_clock()
{
    return std::make_shared<tame::manual_time>();
}

diagnose_options embedded(std::chrono::milliseconds delay, std::chrono::milliseconds deadline,
                          std::shared_ptr<tame::manual_time> time = manual_clock())
{
    diagnose_options options;
    options.upstream_delay = delay;
    options.deadline = deadline;
    options.time = std::move(time);
    return options;
}

/// A stand-in for a third-party diagnosis service: answers `status` with
/// `body` after `delay`, and records what it saw. Its server's timeouts and
/// client-gone sweeps run on `time`.
struct fake_upstream {
    struct seen {
        std::mutex mutex;
        std::string symptoms;
        std::atomic<int> calls{0};
        std::atomic<bool> caller_gone{false};
    };

    fake_upstream(std::chrono::milliseconds delay, http::status status, std::string body,
                  std::shared_ptr<tame::time_source> time = tame::steady_time())
        : server{routes(delay, status, std::move(body), log), tame_test::test_options(time)}
    {
    }

    static http::router routes(std::chrono::milliseconds delay, http::status status,
                               std::string body, std::shared_ptr<seen> log)
    {
        http::router r;
        r.get("/dx", [=](http::request_context& ctx) -> asio::awaitable<http::response> {
            ++log->calls;
            {
                const std::lock_guard lock{log->mutex};
                log->symptoms = ctx.query("symptoms").value_or("");
            }
            asio::steady_timer wait{co_await asio::this_coro::executor, delay};
            try {
                co_await wait.async_wait(asio::use_awaitable);
            } catch (const boost::system::system_error&) {
                log->caller_gone = ctx.cancel_reason() == http::cancel_reason::client_gone;
                throw;
            }
            http::response res{status, 11};
            res.set(http::field::content_type, "application/json");
            res.body() = body;
            co_return res;
        });
        return r;
    }

    std::string url() const { return server.url("/dx"); }

    std::shared_ptr<seen> log = std::make_shared<seen>();
    tame_test::test_server server;
};

diagnose_options upstream_at(std::string url, std::chrono::milliseconds deadline = 2000ms,
                             std::shared_ptr<tame::manual_time> time = manual_clock())
{
    diagnose_options options;
    options.upstream = std::move(url);
    options.deadline = deadline;
    options.time = std::move(time);
    return options;
}

} // namespace

TEST_CASE("diagnose answers 200 with the upstream's data when it answers in time",
          "[apps][diagnose]")
{
    auto time = manual_clock();
    diagnose_host host{embedded(10ms, 2000ms, time)};
    tame_test::raw_client client{host.port()};
    client.send(tame_test::request_text("GET", "/diagnose?symptoms=fever,cough"));
    // The call's deadline and the embedded upstream's delay are both counting.
    REQUIRE(eventually([&] { return time->waiting() == 2; }));

    time->advance(10ms);
    auto a = answer_of(client.read_response());

    REQUIRE(a);
    CHECK(a->status() == 200);
    const auto& data = a->object().at("data").as_object();
    CHECK(data.at("symptoms").as_string() == "fever,cough");
    CHECK(data.at("diagnoses").as_array().size() == 4);
    CHECK(host.service().upstream() ==
          "http://127.0.0.1:" + std::to_string(host.port()) + "/upstream/diagnoses");
}

TEST_CASE("diagnose without symptoms is a 400", "[apps][diagnose]")
{
    diagnose_host host{embedded(10ms, 2000ms)};
    for (const char* target : {"/diagnose", "/diagnose?symptoms="}) {
        auto a = call(host.port(), "GET", target);
        REQUIRE(a);
        CHECK(a->status() == 400);
        CHECK(a->error().find("symptoms is required") != std::string::npos);
    }
}

TEST_CASE("diagnose answers 408 at the deadline, not before, and the upstream sees its connection "
          "closed",
          "[apps][diagnose]")
{
    // An upstream that never answers: only the deadline ends the call. The
    // service and the upstream's server share one clock.
    auto time = manual_clock();
    fake_upstream upstream{std::chrono::hours{1}, http::status::ok, R"({"diagnoses":[]})", time};
    diagnose_host host{upstream_at(upstream.url(), 200ms, time)};
    tame_test::raw_client client{host.port()};
    client.send(tame_test::request_text("GET", "/diagnose?symptoms=fever"));
    REQUIRE(eventually([&] { return upstream.log->calls == 1; }));

    // The upstream's server watches the call from its first sweep (within 100 ms).
    time->advance(200ms - 1ms);
    CHECK(client.nothing_arrived());
    CHECK_FALSE(upstream.log->caller_gone);
    time->advance(1ms);
    auto a = answer_of(client.read_response());

    REQUIRE(a);
    CHECK(a->status() == 408);
    CHECK(a->error().find("did not answer within 200 ms") != std::string::npos);
    // The call was really stopped: the upstream's server saw its client leave,
    // though it would never have answered.
    CHECK(eventually([&] { return upstream.log->caller_gone.load(); }, 2000ms));
}

TEST_CASE("the embedded upstream counts a caller that hung up at the deadline", "[apps][diagnose]")
{
    // The server, which watches the embedded upstream's handler for its caller
    // leaving from its first sweep (within 100 ms), shares the service's clock.
    auto time = manual_clock();
    diagnose_host host{embedded(3000ms, 100ms, time), 2, tame_test::test_options(time)};
    tame_test::raw_client client{host.port()};
    client.send(tame_test::request_text("GET", "/diagnose?symptoms=rash"));
    // The server's sweeper, the call's deadline and the embedded upstream's
    // delay are all counting.
    REQUIRE(eventually([&] { return time->waiting() == 3; }));

    time->advance(100ms);
    auto a = answer_of(client.read_response());

    REQUIRE(a);
    CHECK(a->status() == 408);
    CHECK(eventually([&] { return host.service().upstream_abandoned() == 1; }, 2000ms));
    const auto metrics = host.server().metrics().render();
    CHECK(metrics.find("tame_diagnose_upstream_calls_total{outcome=\"timed_out\"} 1") !=
          std::string::npos);
}

TEST_CASE("symptoms reach the upstream encoded and decoded intact", "[apps][diagnose]")
{
    fake_upstream upstream{0ms, http::status::ok, R"({"diagnoses":[]})"};
    diagnose_host host{upstream_at(upstream.url())};
    auto a = call(host.port(), "GET", "/diagnose?symptoms=sore%20throat%26fever%3D%C3%A9");
    REQUIRE(a);
    CHECK(a->status() == 200);
    const std::lock_guard lock{upstream.log->mutex};
    CHECK(upstream.log->symptoms == "sore throat&fever=\xC3\xA9");
}

TEST_CASE("the longest symptoms reach the upstream, and longer ones are a 400, not a 502",
          "[apps][diagnose]")
{
    diagnose_host host{embedded(0ms, 2000ms)};
    // '+' is a space, which the upstream call encodes as %20: three times longer.
    const std::string longest(samples::max_symptoms_length, '+');
    auto fits = call(host.port(), "GET", "/diagnose?symptoms=" + longest);
    auto too_long = call(host.port(), "GET", "/diagnose?symptoms=" + longest + "+");

    REQUIRE(fits);
    CHECK(fits->status() == 200);
    REQUIRE(too_long);
    CHECK(too_long->status() == 400);
    CHECK(too_long->error().find("longer than") != std::string::npos);
}

TEST_CASE("diagnose answers 502 when the upstream is down", "[apps][diagnose][faults]")
{
    std::uint16_t closed_port = 0;
    {
        asio::io_context io;
        asio::ip::tcp::acceptor probe{io, {asio::ip::make_address("127.0.0.1"), 0}};
        closed_port = probe.local_endpoint().port();
    }
    diagnose_host host{upstream_at("http://127.0.0.1:" + std::to_string(closed_port) + "/dx")};
    auto a = call(host.port(), "GET", "/diagnose?symptoms=fever");
    REQUIRE(a);
    CHECK(a->status() == 502);
    CHECK(a->error().find("could not be reached") != std::string::npos);
}

TEST_CASE("an overloaded upstream makes diagnose answer 503 with Retry-After",
          "[apps][diagnose][faults]")
{
    // The embedded upstream shares the server's in-flight cap: with 3 places,
    // one /diagnose and its upstream call take two, and a second /diagnose
    // leaves no room for its own upstream call.
    auto server_options = tame_test::test_options();
    server_options.max_in_flight = 3;
    auto time = manual_clock();
    diagnose_host host{embedded(500ms, 3000ms, time), 2, server_options};
    tame_test::raw_client first{host.port()};
    first.send(tame_test::request_text("GET", "/diagnose?symptoms=fever"));
    // The call's deadline and the embedded upstream's delay are both counting.
    REQUIRE(eventually([&] { return time->waiting() == 2; }));
    REQUIRE(host.server().metrics().in_flight() == 2);

    // The first upstream call cannot end while the clock stands still.
    auto second = call(host.port(), "GET", "/diagnose?symptoms=cough");
    time->advance(500ms);
    auto served = answer_of(first.read_response());

    REQUIRE(second);
    CHECK(second->status() == 503);
    CHECK(second->error().find("overloaded") != std::string::npos);
    CHECK(!second->response[http::field::retry_after].empty());
    REQUIRE(served);
    CHECK(served->status() == 200);
}

TEST_CASE("diagnose answers 502 when the upstream answers an error", "[apps][diagnose][faults]")
{
    fake_upstream upstream{0ms, http::status::internal_server_error, R"({"error":"boom"})"};
    diagnose_host host{upstream_at(upstream.url())};
    auto a = call(host.port(), "GET", "/diagnose?symptoms=fever");
    REQUIRE(a);
    CHECK(a->status() == 502);
    CHECK(a->error().find("answered 500") != std::string::npos);
}

TEST_CASE("diagnose answers 502 when the upstream answers malformed JSON",
          "[apps][diagnose][faults]")
{
    fake_upstream upstream{0ms, http::status::ok, "<html>maintenance</html>"};
    diagnose_host host{upstream_at(upstream.url())};
    auto a = call(host.port(), "GET", "/diagnose?symptoms=fever");
    REQUIRE(a);
    CHECK(a->status() == 502);
    CHECK(a->error().find("malformed JSON") != std::string::npos);
    CHECK(host.server().metrics().render().find(
              "tame_diagnose_upstream_calls_total{outcome=\"failed\"} 1") != std::string::npos);
}

TEST_CASE("an upstream that is not an http URL is refused", "[apps][diagnose]")
{
    asio::io_context io;
    for (const char* url :
         {"ftp://example.com/dx", "https://example.com/dx", "not a url", "http://"}) {
        INFO(url);
        diagnose_options options;
        options.upstream = url;
        CHECK_THROWS(diagnose_service{io.get_executor(), options});
    }
}

TEST_CASE("a server on every address calls its embedded upstream on loopback", "[apps][diagnose]")
{
    asio::io_context io;
    diagnose_service on_v4{io.get_executor(), diagnose_options{}};
    on_v4.on_started({asio::ip::address_v4::any(), 8080});
    CHECK(on_v4.upstream() == "http://127.0.0.1:8080/upstream/diagnoses");
    diagnose_service on_v6{io.get_executor(), diagnose_options{}};
    on_v6.on_started({asio::ip::address_v6::any(), 8080});
    CHECK(on_v6.upstream() == "http://[::1]:8080/upstream/diagnoses");
    diagnose_service elsewhere{io.get_executor(), upstream_at("http://10.1.2.3:9000/dx")};
    elsewhere.on_started({asio::ip::address_v4::any(), 8080});
    CHECK(elsewhere.upstream() == "http://10.1.2.3:9000/dx");
}

namespace {

/// The value of the series `series` (name and labels) in the host's /metrics;
/// empty when it is not there.
std::string metric(diagnose_host& host, const std::string& series)
{
    const auto text = host.server().metrics().render();
    const auto at = text.find(series + " ");
    return at == std::string::npos
               ? ""
               : text.substr(at + series.size() + 1, text.find('\n', at) - at - series.size() - 1);
}

const std::string limit_series = "tame_limit{name=\"diagnose_upstream\"}";

} // namespace

TEST_CASE("diagnose refuses a call over its upstream limit with an immediate 503",
          "[apps][diagnose][limit]")
{
    auto time = manual_clock();
    auto options = embedded(3000ms, 2000ms, time);
    options.upstream_limit_max = 1;
    diagnose_host host{options};
    tame_test::raw_client first{host.port()};
    first.send(tame_test::request_text("GET", "/diagnose?symptoms=fever"));
    REQUIRE(eventually(
        [&] { return metric(host, "tame_limit_in_flight{name=\"diagnose_upstream\"}") == "1"; }));

    auto refused = call(host.port(), "GET", "/diagnose?symptoms=cough");
    time->advance(2000ms);
    auto timed_out = answer_of(first.read_response());

    REQUIRE(refused);
    CHECK(refused->status() == 503);
    CHECK(refused->response[http::field::retry_after] == "1");
    CHECK(refused->error().find("too many calls") != std::string::npos);
    CHECK(metric(host, "tame_limit_rejected_total{name=\"diagnose_upstream\"}") == "1");
    REQUIRE(timed_out);
    CHECK(timed_out->status() == 408);
    CHECK(metric(host, limit_series) == "1");
}

TEST_CASE("diagnose's upstream limit starts at Netflix's 20 and can be turned off",
          "[apps][diagnose][limit]")
{
    diagnose_host limited{embedded(0ms, 2000ms)};
    auto options = embedded(0ms, 2000ms);
    options.upstream_limit = "off";
    diagnose_host unlimited{options};

    CHECK(metric(limited, limit_series) == "20");
    CHECK(metric(unlimited, limit_series).empty());
    auto a = call(unlimited.port(), "GET", "/diagnose?symptoms=fever");
    REQUIRE(a);
    CHECK(a->status() == 200);
}

TEST_CASE("an aimd upstream limit shrinks when calls time out", "[apps][diagnose][limit]")
{
    auto time = manual_clock();
    auto options = embedded(3000ms, 100ms, time);
    options.upstream_limit = "aimd";
    options.upstream_limit_min = 1;
    options.upstream_limit_max = 10; // starts at 10
    options.breaker = false;
    diagnose_host host{options};
    tame_test::raw_client client{host.port()};

    client.send(tame_test::request_text("GET", "/diagnose?symptoms=fever"));
    REQUIRE(eventually(
        [&] { return metric(host, "tame_limit_in_flight{name=\"diagnose_upstream\"}") == "1"; }));
    time->advance(100ms);
    auto a = answer_of(client.read_response());

    REQUIRE(a);
    CHECK(a->status() == 408);
    CHECK(metric(host, limit_series) == "9"); // 10 * 0.9
}
