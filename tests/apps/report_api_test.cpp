#include "hosted_service.hpp"

#include "report_api/service.hpp"

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace apps_test;
using samples::report_api_options;
using samples::report_api_service;
using report_host = hosted_service<report_api_service>;

namespace {

report_api_options quick(std::size_t capacity = 100, std::chrono::milliseconds report_time = 20ms)
{
    report_api_options options;
    options.pool_capacity = capacity;
    options.report_time = report_time;
    return options;
}

std::optional<answer> generate(std::uint16_t port, std::string_view body)
{
    return call(port, "POST", "/reports/generate", body);
}

} // namespace

TEST_CASE("a report request waits for its own reports and answers with their count",
          "[apps][report_api]")
{
    report_host host{quick()};
    auto a = generate(host.port(), R"({"reportIds":[1,2,3]})");
    REQUIRE(a);
    CHECK(a->status() == 200);
    const auto& o = a->object();
    CHECK(o.at("message").as_string() == "processed 3 report generation tasks");
    CHECK(o.at("reports").as_int64() == 3);
    CHECK(o.at("generated").as_int64() == 3);
    CHECK(o.at("failed").as_array().empty());
    CHECK(number(o.at("elapsed_ms")) >= 20);
    // The pool counts a task once its coroutine has ended, just after the task's
    // last step let the request go on.
    CHECK(eventually([&] { return host.service().pool().stats().completed == 3; }));
    CHECK(host.service().pool().stats().submitted == 3);
}

TEST_CASE("an empty list of ids is answered at once", "[apps][report_api]")
{
    report_host host{quick()};
    auto a = generate(host.port(), R"({"reportIds":[]})");
    REQUIRE(a);
    CHECK(a->status() == 200);
    CHECK(a->object().at("reports").as_int64() == 0);
}

TEST_CASE("a failing report is listed in the answer and the service goes on",
          "[apps][report_api][faults]")
{
    auto options = quick();
    options.failing_ids = {2};
    report_host host{options};
    auto a = generate(host.port(), R"({"reportIds":[1,2,3]})");
    REQUIRE(a);
    CHECK(a->status() == 200);
    CHECK(a->object().at("generated").as_int64() == 2);
    const auto& failed = a->object().at("failed").as_array();
    REQUIRE(failed.size() == 1);
    CHECK(failed[0].at("id").as_int64() == 2);
    CHECK(std::string{failed[0].at("error").as_string()}.find("report 2") != std::string::npos);
    CHECK(eventually([&] { return host.service().pool().stats().failed == 1; }));

    auto next = generate(host.port(), R"({"reportIds":[4,5]})");
    REQUIRE(next);
    CHECK(next->status() == 200);
    CHECK(next->object().at("generated").as_int64() == 2);
}

TEST_CASE("invalid report requests get 400 with a reason", "[apps][report_api]")
{
    auto options = quick();
    options.max_reports = 3;
    report_host host{options};
    const std::vector<std::pair<std::string, std::string>> cases{
        {"nope", "not valid JSON"},
        {"[1,2]", "must be a JSON object"},
        {"{}", "reportIds is missing"},
        {R"({"reportIds":"1,2"})", "must be an array"},
        {R"({"reportIds":{"a":1}})", "must be an array"},
        {R"({"reportIds":[1,0]})", "reportIds[1] must be a positive integer"},
        {R"({"reportIds":[-3]})", "reportIds[0] must be a positive integer"},
        {R"({"reportIds":[1,2.5]})", "reportIds[1] must be a positive integer"},
        {R"({"reportIds":[1,"7"]})", "reportIds[1] must be a positive integer"},
        {R"({"reportIds":[null]})", "reportIds[0] must be a positive integer"},
        {R"({"reportIds":[18446744073709551615]})", "reportIds[0] must be a positive integer"},
        {R"({"reportIds":[1,2,3,4]})", "too many reportIds: 4 (at most 3)"},
    };
    for (const auto& [body, reason] : cases) {
        INFO(body);
        auto a = generate(host.port(), body);
        REQUIRE(a);
        CHECK(a->status() == 400);
        CHECK(a->error().find(reason) != std::string::npos);
    }
    CHECK(host.service().pool().stats().submitted == 0);
}

TEST_CASE("the pool runs at most its capacity of reports over all requests", "[apps][report_api]")
{
    // 5 requests of 4 reports of 20 ms on a pool of 4: at least 5 rounds.
    report_host host{quick(4, 20ms), 2};
    const auto started = std::chrono::steady_clock::now();
    const auto answers = call_concurrently(5, host.port(), "POST", "/reports/generate",
                                           R"({"reportIds":[1,2,3,4]})");
    CHECK(std::chrono::steady_clock::now() - started >= 100ms);
    for (const auto& a : answers) {
        REQUIRE(a);
        CHECK(a->status() == 200);
        CHECK(a->object().at("generated").as_int64() == 4);
    }
    CHECK(eventually([&] { return host.service().pool().stats().completed == 20; }));
    CHECK(host.service().pool().stats().submitted == 20);
}

TEST_CASE("a nonblocking service refuses with 503 and Retry-After when the pool is full",
          "[apps][report_api]")
{
    auto options = quick(2, 300ms);
    options.nonblocking = true;
    report_host host{options};
    std::optional<answer> first;
    std::jthread client{[&] { first = generate(host.port(), R"({"reportIds":[1,2]})"); }};
    REQUIRE(eventually([&] { return host.service().pool().running() == 2; }));

    auto refused = generate(host.port(), R"({"reportIds":[3]})");
    REQUIRE(refused);
    CHECK(refused->status() == 503);
    CHECK(refused->response[http::field::retry_after] == "1");
    client.join();
    REQUIRE(first);
    CHECK(first->status() == 200);
    CHECK(first->object().at("generated").as_int64() == 2);
}

TEST_CASE("a nonblocking service refuses at once a request the free slots cannot hold",
          "[apps][report_api]")
{
    auto options = quick(2, 500ms);
    options.nonblocking = true;
    report_host host{options};
    std::optional<answer> first;
    std::jthread client{[&] { first = generate(host.port(), R"({"reportIds":[1]})"); }};
    REQUIRE(eventually([&] { return host.service().pool().running() == 1; }));

    // One slot free, two reports asked: refused whole, none of them started.
    // (Should another request take the slot between the look and the
    // submissions, the reports already started are cancelled before the 503.)
    auto refused = generate(host.port(), R"({"reportIds":[2,3]})");
    REQUIRE(refused);
    CHECK(refused->status() == 503);
    CHECK(host.service().pool().running() == 1);
    CHECK(host.service().pool().stats().submitted == 1);
    client.join();
    REQUIRE(first);
    CHECK(first->status() == 200);
}

TEST_CASE("a nonblocking service answers 400 to more ids than its pool has slots",
          "[apps][report_api]")
{
    auto options = quick(2, 20ms);
    options.nonblocking = true;
    report_host host{options};
    for (int i = 0; i < 2; ++i) {
        auto a = generate(host.port(), R"({"reportIds":[1,2,3]})");
        REQUIRE(a);
        CHECK(a->status() == 400);
        CHECK(a->error().find("the pool runs at most 2") != std::string::npos);
    }
    auto fits = generate(host.port(), R"({"reportIds":[1,2]})");
    REQUIRE(fits);
    CHECK(fits->status() == 200);
}

TEST_CASE("a client that goes away cancels its reports", "[apps][report_api]")
{
    report_host host{quick(100, 5000ms)};
    {
        tame_test::raw_client client{host.port()};
        const std::string body = R"({"reportIds":[1,2,3]})";
        client.send(tame_test::request_text("POST", "/reports/generate",
                                            "Content-Type: application/json\r\n", body));
        REQUIRE(eventually([&] { return host.service().pool().running() == 3; }));
        client.close();
    }
    REQUIRE(eventually([&] { return host.service().pool().running() == 0; }, 2000ms));
    CHECK(host.service().pool().stats().failed == 0);
}

TEST_CASE("a request whose client went away ends only once its reports have ended",
          "[apps][report_api]")
{
    report_host host{quick(100, 5000ms)};
    {
        tame_test::raw_client client{host.port()};
        const std::string body = R"({"reportIds":[1,2,3]})";
        client.send(tame_test::request_text("POST", "/reports/generate",
                                            "Content-Type: application/json\r\n", body));
        REQUIRE(eventually([&] { return host.service().pool().running() == 3; }));
        client.close();
    }

    REQUIRE(eventually([&] { return host.server().metrics().in_flight() == 0; }, 2000ms));

    // The handler joined its reports before it ended: none is left to end later.
    const auto s = host.service().pool().stats();
    CHECK(s.running == 0);
    CHECK(s.completed == 3);
    CHECK(s.failed == 0);
}

TEST_CASE("a shutdown whose drain ends mid-request answers 503 once its reports have ended",
          "[apps][report_api]")
{
    report_host host{quick(100, 5000ms)};
    std::optional<answer> a;
    std::jthread client{[&] { a = generate(host.port(), R"({"reportIds":[1,2]})"); }};
    REQUIRE(eventually([&] { return host.service().pool().running() == 2; }));

    CHECK(host.shutdown(100ms) == std::size_t{1});
    client.join();

    REQUIRE(a);
    CHECK(a->status() == 503);
    CHECK(a->error().find("shutting down") != std::string::npos);
    // The request cancelled its reports and waited for them, so the pool's own
    // shutdown found none to cancel.
    const auto s = host.service().pool().stats();
    CHECK(s.running == 0);
    CHECK(s.completed == 2);
    CHECK(s.cancelled == 0);
}

TEST_CASE("a shutdown lets report requests in flight finish, then closes the pool",
          "[apps][report_api]")
{
    report_host host{quick(100, 100ms)};
    std::optional<answer> a;
    std::jthread client{[&] { a = generate(host.port(), R"({"reportIds":[1,2]})"); }};
    REQUIRE(eventually([&] { return host.service().pool().running() == 2; }));
    CHECK(host.shutdown(10s) == std::size_t{0});
    client.join();
    REQUIRE(a);
    CHECK(a->status() == 200);
    CHECK(host.service().pool().is_closed());
}

TEST_CASE("a storm of clients leaving at once cancels reports that never end, running or waiting "
          "for a slot",
          "[apps][report_api][faults]")
{
    // 100 requests of one report that takes an hour, on a pool of 50: half of
    // them run a report, half wait in async_submit for a slot.
    constexpr int clients = 100;
    report_host host{quick(50, 3600s)};
    std::vector<std::unique_ptr<tame_test::raw_client>> leaving;
    for (int i = 0; i < clients; ++i) {
        leaving.push_back(std::make_unique<tame_test::raw_client>(host.port()));
        const std::string body = R"({"reportIds":[)" + std::to_string(i + 1) + "]}";
        leaving.back()->send(tame_test::request_text("POST", "/reports/generate",
                                                     "Content-Type: application/json\r\n", body));
    }
    REQUIRE(eventually([&] {
        const auto s = host.service().pool().stats();
        return s.running == 50 && s.waiting == 50;
    }));

    leaving.clear(); // every client closes its connection

    CHECK(eventually([&] { return host.server().metrics().in_flight() == 0; }, 5000ms));
    CHECK(eventually([&] { return host.service().pool().running() == 0; }, 5000ms));
    const auto s = host.service().pool().stats();
    CHECK(s.waiting == 0);
    // Every report that started ended as cancelled by its request, not failed.
    // (A waiting request whose client the server had not yet seen leave may
    // still take a slot freed by another, and is cancelled in its turn.)
    CHECK(s.submitted >= 50);
    CHECK(s.completed == s.submitted);
    CHECK(s.failed == 0);
    CHECK(s.cancelled == 0);
    CHECK(eventually([&] { return host.server().metrics().connections() == 0; }, 5000ms));
    CHECK(!host.service().pool().is_closed());
    // The service goes on: a new request gets a slot for its report at once.
    tame_test::raw_client next{host.port()};
    next.send(tame_test::request_text(
        "POST", "/reports/generate", "Content-Type: application/json\r\n", R"({"reportIds":[7]})"));
    CHECK(eventually([&] { return host.service().pool().running() == 1; }));
    auto health = call(host.port(), "GET", "/healthz");
    REQUIRE(health);
    CHECK(health->status() == 200);
}
