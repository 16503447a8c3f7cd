#include "hosted_service.hpp"

#include "common/app_options.hpp"
#include "diagnose/service.hpp"
#include "report_api/service.hpp"
#include "sync_data/service.hpp"

#include <tame_test/prometheus_text.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/detached.hpp>

#include <string>
#include <vector>

using namespace apps_test;

namespace {

/// The three services on one server, as tame-samples runs them.
struct all_services {
    explicit all_services(int threads = 2)
        : sync{io.get_executor(), sync_options()}, reports{io.get_executor(), report_options()},
          diagnosis{io.get_executor(), diagnose_options()}, host{io,
                                                                 {&sync, &reports, &diagnosis},
                                                                 tame_test::test_options()}
    {
        host.start();
        for (int i = 0; i < threads; ++i) {
            threads_.emplace_back([this] { io.run(); });
        }
    }

    ~all_services()
    {
        host.async_shutdown(0ms, asio::detached);
        for (auto& t : threads_) {
            t.join();
        }
    }

    static samples::sync_data_options sync_options()
    {
        samples::sync_data_options o;
        o.tasks = 10;
        o.task_time = 1ms;
        return o;
    }
    static samples::report_api_options report_options()
    {
        samples::report_api_options o;
        o.report_time = 1ms;
        return o;
    }
    static samples::diagnose_options diagnose_options()
    {
        samples::diagnose_options o;
        o.upstream_delay = 1ms;
        return o;
    }

    std::uint16_t port() const { return host.server().local_endpoint().port(); }

    asio::io_context io;
    samples::sync_data_service sync;
    samples::report_api_service reports;
    samples::diagnose_service diagnosis;
    samples::service_host host;
    std::vector<std::thread> threads_;
};

/// tame-samples' flags, bound to options of its own.
struct all_flags {
    samples::app_options app;
    samples::sync_data_options sync;
    samples::report_api_options reports;
    samples::diagnose_options diagnose;
    boost::program_options::options_description flags = make();

    boost::program_options::options_description make()
    {
        auto description = samples::describe_app_options("test", app);
        samples::add_sync_data_options(description, sync);
        samples::add_report_api_options(description, reports);
        samples::add_diagnose_options(description, diagnose);
        return description;
    }
};

/// parse_command_line() on `args` (the program name first).
std::optional<int> parse(std::vector<const char*> args,
                         const boost::program_options::options_description& flags)
{
    return samples::parse_command_line(static_cast<int>(args.size()), args.data(), flags);
}

} // namespace

TEST_CASE("one server serves the three services, health and metrics", "[apps][samples]")
{
    all_services all;
    auto sync = call(all.port(), "POST", "/sync-data");
    REQUIRE(sync);
    CHECK(sync->status() == 200);
    auto reports = call(all.port(), "POST", "/reports/generate", R"({"reportIds":[7]})");
    REQUIRE(reports);
    CHECK(reports->status() == 200);
    auto diagnosis = call(all.port(), "GET", "/diagnose?symptoms=headache");
    REQUIRE(diagnosis);
    CHECK(diagnosis->status() == 200);
    auto health = call(all.port(), "GET", "/healthz");
    REQUIRE(health);
    CHECK(health->status() == 200);

    auto metrics = call(all.port(), "GET", "/metrics");
    REQUIRE(metrics);
    const auto& text = metrics->response.body();
    CHECK(tame_test::prometheus_problem(text).empty());
    for (const char* series :
         {"tame_semaphore_capacity{semaphore=\"sync_tasks\"} 10000",
          "tame_pool_capacity{pool=\"reports\"} 100",
          "tame_pool_completed_total{pool=\"reports\"} 1", "tame_sync_tasks_done_total 10",
          "tame_diagnose_upstream_calls_total{outcome=\"answered\"} 1",
          "tame_http_requests_total{route=\"POST /sync-data\",code=\"200\"} 1"}) {
        INFO(series);
        CHECK(text.find(series) != std::string::npos);
    }
}

TEST_CASE("the common flags parse into the app's options", "[apps][samples]")
{
    samples::app_options app;
    auto flags = samples::describe_app_options("test", app);
    REQUIRE_FALSE(parse({"app", "--address", "0.0.0.0", "--port", "9000", "--threads", "1",
                         "--drain-ms", "250", "--max-in-flight", "50", "--quiet"},
                        flags));
    CHECK(app.address == "0.0.0.0");
    CHECK(app.port == 9000);
    CHECK(app.single_threaded());
    CHECK(app.drain == 250ms);
    const auto server = app.server_options();
    CHECK(server.port == 9000);
    CHECK(server.single_threaded);
    CHECK(server.max_in_flight == 50);
    CHECK_FALSE(server.access_log);
}

TEST_CASE("each service's flags parse into its options", "[apps][samples]")
{
    all_flags all;
    REQUIRE_FALSE(parse({"app",
                         "--tasks",
                         "50",
                         "--concurrency",
                         "5",
                         "--task-ms",
                         "7",
                         "--job-ttl-s",
                         "30",
                         "--pool-size",
                         "8",
                         "--report-ms",
                         "9",
                         "--nonblocking",
                         "--fail-ids",
                         "3",
                         "4",
                         "--upstream",
                         "http://10.0.0.1:9000/dx",
                         "--deadline-ms",
                         "500"},
                        all.flags));
    CHECK(all.sync.tasks == 50);
    CHECK(all.sync.concurrency == 5);
    CHECK(all.sync.task_time == 7ms);
    CHECK(all.sync.job_ttl == std::chrono::seconds{30});
    CHECK(all.reports.pool_capacity == 8);
    CHECK(all.reports.report_time == 9ms);
    CHECK(all.reports.nonblocking);
    CHECK(all.reports.failing_ids == std::set<std::int64_t>{3, 4});
    CHECK(all.diagnose.upstream == "http://10.0.0.1:9000/dx");
    CHECK(all.diagnose.deadline == 500ms);
}

TEST_CASE("the replica flags --redis --lease-ms and --instance are read and without them no Redis "
          "is used",
          "[apps][samples]")
{
    all_flags shared;
    REQUIRE_FALSE(parse(
        {"app", "--redis", "redis://cache:6390/2", "--lease-ms", "3000", "--instance", "replica-a"},
        shared.flags));
    all_flags alone;
    REQUIRE_FALSE(parse({"app"}, alone.flags));

    REQUIRE(shared.app.redis);
    CHECK(shared.app.redis->host == "cache");
    CHECK(shared.app.redis->port == 6390);
    CHECK(shared.app.redis->db == 2);
    CHECK(shared.app.lease == 3000ms);
    CHECK(shared.app.instance == "replica-a");
    CHECK_FALSE(alone.app.redis);
    CHECK(alone.app.lease == 10000ms);
    CHECK(alone.app.instance.find(':') != std::string::npos); // host:pid
}

TEST_CASE("help exits with 0 and bad flags exit with 2", "[apps][samples]")
{
    const std::vector<std::vector<const char*>> bad{
        {"app", "--bogus"},
        {"app", "--port", "70000"},
        {"app", "--tasks", "0"},
        {"app", "--task-ms", "-1"},
        {"app", "--pool-size", "0"},
        {"app", "--upstream", "ftp://x/dx"},
        {"app", "--drain-ms", "-5"},
        {"app", "--threads", "many"},
        {"app", "--threads", "-1"},
        {"app", "--threads", "5000"},
        {"app", "--port", "-1"},
        {"app", "9090"},
        {"app", "--redis", "redis://host:99999"},
        {"app", "--redis", "http://host"},
        {"app", "--lease-ms", "50"},
    };
    for (const auto& args : bad) {
        INFO(args[1]);
        all_flags all;
        CHECK(parse(args, all.flags) == 2);
        CHECK(all.app.port == 8080);
    }
    all_flags all;
    CHECK(parse({"app", "--help"}, all.flags) == 0);
}

TEST_CASE("a default batch outside the query limits is refused at start", "[apps][samples]")
{
    samples::sync_data_options options;
    options.tasks = 10;
    options.max_tasks = 5;
    asio::io_context io;
    CHECK_THROWS_AS((samples::sync_data_service{io.get_executor(), options}),
                    std::invalid_argument);
}
