#include "hosted_service.hpp"

#include "sync_data/service.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace apps_test;
using samples::sync_data_options;
using samples::sync_data_service;
using sync_host = hosted_service<sync_data_service>;

namespace {

sync_data_options quick(std::size_t tasks = 20, std::size_t concurrency = 4,
                        std::chrono::milliseconds task_time = 5ms)
{
    sync_data_options options;
    options.tasks = tasks;
    options.concurrency = concurrency;
    options.task_time = task_time;
    return options;
}

std::string job_id(const answer& a)
{
    return std::string{a.object().at("id").as_string()};
}

std::string job_state(std::uint16_t port, const std::string& id)
{
    auto a = call(port, "GET", "/jobs/" + id);
    return a && a->status() == 200 ? std::string{a->object().at("state").as_string()}
                                   : "http error";
}

} // namespace

TEST_CASE("a sync batch answers with its shape and a measured peak at its limit",
          "[apps][sync_data]")
{
    sync_host host{quick()};
    auto a = call(host.port(), "POST", "/sync-data");
    REQUIRE(a);
    CHECK(a->status() == 200);
    const auto& o = a->object();
    CHECK(o.at("message").as_string() == "synchronised 20 records");
    CHECK(o.at("tasks").as_int64() == 20);
    CHECK(o.at("concurrency").as_int64() == 4);
    CHECK(o.at("peak_concurrency").as_int64() == 4);
    CHECK(number(o.at("elapsed_ms")) >= 5 * 5);
    CHECK(host.service().running_tasks() == 0);
}

TEST_CASE("query parameters override the batch's defaults", "[apps][sync_data]")
{
    sync_host host{quick()};
    auto a = call(host.port(), "POST", "/sync-data?tasks=9&concurrency=3&task_ms=1");
    REQUIRE(a);
    CHECK(a->status() == 200);
    CHECK(a->object().at("tasks").as_int64() == 9);
    CHECK(a->object().at("concurrency").as_int64() == 3);
    CHECK(a->object().at("peak_concurrency").as_int64() == 3);
}

TEST_CASE("a sync batch takes about tasks times task_ms over concurrency", "[apps][sync_data]")
{
    // 100 tasks of 20 ms, 10 at once: 200 ms ideally. It cannot be faster
    // unless the limit is broken, and a batch run one task at a time would
    // take ten times as long; the upper bound is loose for a loaded machine.
    sync_host host{quick(100, 10, 20ms)};
    auto a = call(host.port(), "POST", "/sync-data");
    REQUIRE(a);
    REQUIRE(a->status() == 200);
    const double elapsed = number(a->object().at("elapsed_ms"));
    CHECK(elapsed >= 200);
    CHECK(elapsed < 1000);
}

TEST_CASE("many batches at once never run more tasks than each one's limit", "[apps][sync_data]")
{
    sync_host host{quick(30, 3, 2ms), 3};
    for (const auto& a : call_concurrently(8, host.port(), "POST", "/sync-data")) {
        REQUIRE(a);
        CHECK(a->status() == 200);
        CHECK(a->object().at("peak_concurrency").as_int64() <= 3);
        CHECK(a->object().at("peak_concurrency").as_int64() >= 1);
    }
    CHECK(host.service().running_tasks() == 0);
}

TEST_CASE("the service-wide cap holds back tasks of batches that run together", "[apps][sync_data]")
{
    auto options = quick(12, 4, 10ms);
    options.max_running_tasks = 4;
    sync_host host{options, 2};
    for (const auto& a : call_concurrently(3, host.port(), "POST", "/sync-data")) {
        REQUIRE(a);
        CHECK(a->status() == 200);
    }
    // Three batches of 12 tasks, 4 permits in all: 9 rounds of 10 ms at least.
    const auto metrics = host.server().metrics().render();
    CHECK(metrics.find("tame_semaphore_acquired_total{semaphore=\"sync_tasks\"} 36") !=
          std::string::npos);
    CHECK(metrics.find("tame_semaphore_waited_total{semaphore=\"sync_tasks\"} 0") ==
          std::string::npos);
}

TEST_CASE("malformed or out-of-range query parameters get 400 with a reason", "[apps][sync_data]")
{
    auto options = quick();
    options.max_tasks = 50;
    sync_host host{options};
    const std::vector<std::pair<std::string, std::string>> cases{
        {"tasks=0", "tasks"},
        {"tasks=51", "tasks"},
        {"tasks=abc", "tasks"},
        {"tasks=", "tasks"},
        {"tasks=-1", "tasks"},
        {"tasks=1.5", "tasks"},
        {"concurrency=0", "concurrency"},
        {"concurrency=1001", "concurrency"},
        {"task_ms=60001", "task_ms"},
        {"async=maybe", "async"},
    };
    for (const auto& [query, name] : cases) {
        INFO(query);
        auto a = call(host.port(), "POST", "/sync-data?" + query);
        REQUIRE(a);
        CHECK(a->status() == 400);
        CHECK(a->error().find("query parameter " + name) != std::string::npos);
    }
    auto ok = call(host.port(), "POST", "/sync-data?tasks=2");
    REQUIRE(ok);
    CHECK(ok->status() == 200);
}

TEST_CASE("an async batch answers 202 and its job shows progress until done", "[apps][sync_data]")
{
    sync_host host{quick(20, 2, 20ms)};
    auto started = call(host.port(), "POST", "/sync-data?async=1");
    REQUIRE(started);
    REQUIRE(started->status() == 202);
    const auto id = job_id(*started);
    CHECK(started->response[http::field::location] == "/jobs/" + id);
    CHECK(started->object().at("state").as_string() == "running");

    auto early = call(host.port(), "GET", "/jobs/" + id);
    REQUIRE(early);
    CHECK(early->status() == 200);
    CHECK(early->object().at("total").as_int64() == 20);
    CHECK(early->object().at("done").as_int64() < 20);

    REQUIRE(eventually([&] { return job_state(host.port(), id) == "done"; }));
    auto done = call(host.port(), "GET", "/jobs/" + id);
    REQUIRE(done);
    CHECK(done->object().at("done").as_int64() == 20);
    CHECK(done->object().at("peak_concurrency").as_int64() == 2);
    CHECK(number(done->object().at("elapsed_ms")) >= 200);
}

TEST_CASE("an unknown job is a 404", "[apps][sync_data]")
{
    sync_host host{quick()};
    auto a = call(host.port(), "GET", "/jobs/0123456789abcdef");
    REQUIRE(a);
    CHECK(a->status() == 404);
    CHECK(a->error().find("0123456789abcdef") != std::string::npos);
}

TEST_CASE("deleting a running job cancels the tasks not yet done", "[apps][sync_data]")
{
    sync_host host{quick(1000, 2, 20ms)};
    auto started = call(host.port(), "POST", "/sync-data?async=1");
    REQUIRE(started);
    const auto id = job_id(*started);
    auto deleted = call(host.port(), "DELETE", "/jobs/" + id);
    REQUIRE(deleted);
    CHECK(deleted->status() == 202);
    REQUIRE(eventually([&] { return job_state(host.port(), id) == "cancelled"; }));
    auto after = call(host.port(), "GET", "/jobs/" + id);
    REQUIRE(after);
    CHECK(after->object().at("done").as_int64() < 1000);
    CHECK(host.service().running_tasks() == 0);
    CHECK(host.service().jobs().running() == 0);
}

TEST_CASE("deleting one job cancels it alone: the service's other jobs go on", "[apps][sync_data]")
{
    sync_host host{quick(1000, 1, 20ms)};
    const auto first = job_id(*call(host.port(), "POST", "/sync-data?async=1"));
    const auto second = job_id(*call(host.port(), "POST", "/sync-data?async=1"));
    const auto done_of = [&](const std::string& id) {
        return call(host.port(), "GET", "/jobs/" + id)->object().at("done").as_int64();
    };

    auto deleted = call(host.port(), "DELETE", "/jobs/" + first);
    REQUIRE(deleted);
    CHECK(deleted->status() == 202);
    REQUIRE(eventually([&] { return job_state(host.port(), first) == "cancelled"; }));

    CHECK(job_state(host.port(), second) == "running");
    const auto done_then = done_of(second);
    CHECK(eventually([&] { return done_of(second) > done_then; }));
    CHECK(host.service().jobs().running() == 1);
}

TEST_CASE("an async batch asked for once the service has begun to stop is refused with 503",
          "[apps][sync_data]")
{
    sync_host host{quick(1000, 2, 50ms)};
    const auto running = job_id(*call(host.port(), "POST", "/sync-data?async=1"));

    auto stopped = host.service().async_stop(asio::use_future);
    REQUIRE(stopped.wait_for(5s) == std::future_status::ready);
    CHECK(job_state(host.port(), running) == "cancelled");
    auto refused = call(host.port(), "POST", "/sync-data?async=1");

    REQUIRE(refused);
    CHECK(refused->status() == 503);
    CHECK(refused->error().find("stopping") != std::string::npos);
    CHECK(host.service().jobs().size() == 1);
    CHECK(host.service().jobs().running() == 0);
}

TEST_CASE("a finished job expires after its time to live", "[apps][sync_data]")
{
    auto options = quick(2, 2, 1ms);
    options.job_ttl = std::chrono::seconds{1};
    sync_host host{options};
    auto started = call(host.port(), "POST", "/sync-data?async=1");
    REQUIRE(started);
    const auto id = job_id(*started);
    REQUIRE(eventually([&] { return job_state(host.port(), id) == "done"; }));
    REQUIRE(eventually([&] { return call(host.port(), "GET", "/jobs/" + id)->status() == 404; },
                       3000ms));
    CHECK(host.service().jobs().size() == 0);
}

TEST_CASE("the registry keeps at most max_jobs and refuses a new job while all of them run",
          "[apps][sync_data]")
{
    auto options = quick(1000, 1, 50ms);
    options.max_jobs = 2;
    sync_host host{options};
    const auto first = job_id(*call(host.port(), "POST", "/sync-data?async=1"));
    const auto second = job_id(*call(host.port(), "POST", "/sync-data?async=1"));

    auto refused = call(host.port(), "POST", "/sync-data?async=1");
    REQUIRE(refused);
    CHECK(refused->status() == 503);
    CHECK(!refused->response[http::field::retry_after].empty());

    // Once one has finished, a new job takes the place of the one that
    // finished first.
    call(host.port(), "DELETE", "/jobs/" + first);
    REQUIRE(eventually([&] { return job_state(host.port(), first) == "cancelled"; }));
    auto third = call(host.port(), "POST", "/sync-data?async=1&tasks=1&task_ms=0");
    REQUIRE(third);
    CHECK(third->status() == 202);
    CHECK(call(host.port(), "GET", "/jobs/" + first)->status() == 404);
    CHECK(host.service().jobs().size() == 2);
    call(host.port(), "DELETE", "/jobs/" + second);
}

TEST_CASE("a client that disconnects from a sync batch cancels the tasks not yet done",
          "[apps][sync_data]")
{
    sync_host host{quick(100, 2, 50ms)};
    {
        tame_test::raw_client client{host.port()};
        client.send(tame_test::request_text("POST", "/sync-data"));
        REQUIRE(eventually([&] { return host.service().running_tasks() == 2; }));
        client.close();
    }
    // The server notices within its sweep interval and cancels the handler,
    // whose batch cancels its tasks and waits for them.
    REQUIRE(eventually([&] { return host.service().running_tasks() == 0; }, 2000ms));
    // A task leaves the running count just before it gives its permit back,
    // on a server thread: the permits are whole soon after, never lost.
    CHECK(eventually([&] {
        return host.server().metrics().render().find(
                   "tame_semaphore_available{semaphore=\"sync_tasks\"} 10000") != std::string::npos;
    }));
    const auto metrics = host.server().metrics().render();
    CHECK(metrics.find("tame_sync_tasks_done_total 100") == std::string::npos);
}

TEST_CASE("a shutdown lets a sync batch in flight finish within the drain", "[apps][sync_data]")
{
    sync_host host{quick(20, 2, 20ms)};
    std::optional<answer> a;
    std::jthread client{[&] { a = call(host.port(), "POST", "/sync-data"); }};
    REQUIRE(eventually([&] { return host.service().running_tasks() > 0; }));
    CHECK(host.shutdown(10s) == std::size_t{0});
    client.join();
    REQUIRE(a);
    CHECK(a->status() == 200);
    CHECK(a->object().at("peak_concurrency").as_int64() == 2);
}

TEST_CASE("a shutdown whose drain ends mid-batch answers 503 with the progress",
          "[apps][sync_data]")
{
    sync_host host{quick(100, 2, 50ms)};
    std::optional<answer> a;
    std::jthread client{[&] { a = call(host.port(), "POST", "/sync-data"); }};
    REQUIRE(eventually([&] { return host.service().running_tasks() > 0; }));
    CHECK(host.shutdown(100ms) == std::size_t{1});
    client.join();
    REQUIRE(a);
    CHECK(a->status() == 503);
    CHECK(a->error().find("shutting down") != std::string::npos);
    CHECK(a->object().at("done").as_int64() < 100);
    CHECK(a->object().at("tasks").as_int64() == 100);
    CHECK(host.service().running_tasks() == 0);
}

TEST_CASE("a shutdown cancels the async jobs and completes once they have ended",
          "[apps][sync_data]")
{
    sync_host host{quick(1000, 2, 50ms), 2};
    for (int i = 0; i < 4; ++i) {
        auto started = call(host.port(), "POST", "/sync-data?async=1");
        REQUIRE(started);
        CHECK(started->status() == 202);
    }
    REQUIRE(host.shutdown(0ms));
    // No waiting here: the service may be destroyed as soon as the shutdown
    // completes, so nothing of it may still run.
    CHECK(host.service().jobs().running() == 0);
    CHECK(host.service().running_tasks() == 0);
}

TEST_CASE("deleting a job that has ended is a 409", "[apps][sync_data]")
{
    sync_host host{quick(1, 1, 0ms)};
    const auto id = job_id(*call(host.port(), "POST", "/sync-data?async=1"));
    REQUIRE(eventually([&] { return job_state(host.port(), id) == "done"; }));
    auto a = call(host.port(), "DELETE", "/jobs/" + id);
    REQUIRE(a);
    CHECK(a->status() == 409);
    CHECK(job_state(host.port(), id) == "done");
}

TEST_CASE("a storm of clients leaving at once cancels their batches, running or waiting for the "
          "service-wide cap",
          "[apps][sync_data][faults]")
{
    // 100 batches of 2 tasks of a minute each, under a cap of 100 tasks: half
    // of the tasks run, half wait for a permit of the service-wide semaphore.
    constexpr int clients = 100;
    auto options = quick(2, 2, 60000ms);
    options.max_running_tasks = 100;
    sync_host host{options};
    std::vector<std::unique_ptr<tame_test::raw_client>> leaving;
    for (int i = 0; i < clients; ++i) {
        leaving.push_back(std::make_unique<tame_test::raw_client>(host.port()));
        leaving.back()->send(tame_test::request_text("POST", "/sync-data"));
    }
    const auto metrics_show = [&](const std::string& series) {
        return host.server().metrics().render().find(series) != std::string::npos;
    };
    REQUIRE(eventually([&] { return host.service().running_tasks() == 100; }));
    REQUIRE(eventually(
        [&] { return metrics_show("tame_semaphore_waiting{semaphore=\"sync_tasks\"} 100\n"); }));

    leaving.clear(); // every client closes its connection

    CHECK(eventually([&] { return host.server().metrics().in_flight() == 0; }, 5000ms));
    CHECK(eventually([&] { return host.service().running_tasks() == 0; }, 5000ms));
    CHECK(metrics_show("tame_semaphore_waiting{semaphore=\"sync_tasks\"} 0\n"));
    CHECK(metrics_show("tame_sync_tasks_done_total 0\n"));
    CHECK(eventually([&] { return host.server().metrics().connections() == 0; }, 5000ms));
    // The service goes on, its cap whole again.
    auto a = call(host.port(), "POST", "/sync-data?tasks=4&concurrency=2&task_ms=1");
    REQUIRE(a);
    CHECK(a->status() == 200);
    CHECK(a->object().at("peak_concurrency").as_int64() == 2);
}
