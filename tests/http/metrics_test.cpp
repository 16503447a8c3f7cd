#include <tame/http/metrics.hpp>

#include <tame/semaphore.hpp>
#include <tame/task_pool.hpp>

#include <tame_test/prometheus_text.hpp>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

namespace asio = boost::asio;
namespace http = tame::http;
using namespace std::chrono_literals;

TEST_CASE("requests are counted by route and status code", "[http][metrics]")
{
    http::metrics_registry metrics{{"GET /hello", "POST /jobs"}};

    metrics.record_request(0, 200, 1ms);
    metrics.record_request(0, 200, 2ms);
    metrics.record_request(1, 503, 1ms);
    metrics.record_request(metrics.unmatched_route(), 404, 1ms);
    const auto text = metrics.render();

    CHECK(metrics.requests(0, 200) == 2);
    CHECK(text.find("tame_http_requests_total{route=\"GET /hello\",code=\"200\"} 2\n") !=
          std::string::npos);
    CHECK(text.find("tame_http_requests_total{route=\"POST /jobs\",code=\"503\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("tame_http_requests_total{route=\"unmatched\",code=\"404\"} 1\n") !=
          std::string::npos);
}

TEST_CASE("the latency histogram is cumulative and ends with +Inf, sum and count",
          "[http][metrics]")
{
    http::metrics_registry metrics{{"GET /hello"}};

    metrics.record_request(0, 200, 300us);
    metrics.record_request(0, 200, 30ms);
    metrics.record_request(0, 200, 30s);
    const auto text = metrics.render();

    const std::string route = "route=\"GET /hello\"";
    CHECK(text.find("tame_http_request_duration_seconds_bucket{" + route + ",le=\"0.0005\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("tame_http_request_duration_seconds_bucket{" + route + ",le=\"0.05\"} 2\n") !=
          std::string::npos);
    CHECK(text.find("tame_http_request_duration_seconds_bucket{" + route + ",le=\"10\"} 2\n") !=
          std::string::npos);
    CHECK(text.find("tame_http_request_duration_seconds_bucket{" + route + ",le=\"+Inf\"} 3\n") !=
          std::string::npos);
    CHECK(text.find("tame_http_request_duration_seconds_count{" + route + "} 3\n") !=
          std::string::npos);
    CHECK(text.find("tame_http_request_duration_seconds_sum{" + route + "} 30.0303") !=
          std::string::npos);
}

TEST_CASE("the rendering is valid Prometheus text, with application series grouped by name",
          "[http][metrics]")
{
    asio::io_context io;
    tame::async_semaphore uploads{io, 3};
    tame::task_pool_options pool_options;
    pool_options.capacity = 5;
    tame::task_pool reports{io.get_executor(), pool_options};
    http::metrics_registry metrics{{"GET /a \"quoted\" \\ route"}};
    metrics.record_request(0, 200, 1ms);
    metrics.add_semaphore("uploads", uploads);
    metrics.add_task_pool("reports", reports);
    metrics.add(http::metric_type::gauge, "app_jobs", "Jobs.", "state=\"running\"",
                [] { return 2.0; });
    metrics.add(http::metric_type::counter, "app_errors_total", "Errors.", "", [] { return 0.0; });
    metrics.add(http::metric_type::gauge, "app_jobs", "Jobs.", "state=\"done\"",
                [] { return 5.0; });
    auto held = uploads.try_acquire(2);

    const auto text = metrics.render();

    INFO(text);
    CHECK(tame_test::prometheus_problem(text) == "");
    CHECK(text.find("tame_semaphore_available{semaphore=\"uploads\"} 1\n") != std::string::npos);
    CHECK(text.find("tame_pool_capacity{pool=\"reports\"} 5\n") != std::string::npos);
    CHECK(text.find("app_jobs{state=\"running\"} 2\napp_jobs{state=\"done\"} 5\n") !=
          std::string::npos);
    CHECK(text.find("route=\"GET /a \\\"quoted\\\" \\\\ route\"") != std::string::npos);
}

TEST_CASE("the checker refuses text a scraper would refuse", "[http][metrics]")
{
    CHECK_FALSE(tame_test::prometheus_problem("x 1\n").empty());
    CHECK_FALSE(tame_test::prometheus_problem("# TYPE x gauge\nx{a=b} 1\n").empty());
    CHECK_FALSE(tame_test::prometheus_problem("# TYPE x gauge\nx 1").empty());
    CHECK(tame_test::prometheus_problem("# TYPE x gauge\nx{a=\"b\"} 1\n").empty());
}

TEST_CASE("a bad metric name is refused", "[http][metrics]")
{
    http::metrics_registry metrics;

    CHECK_THROWS_AS(metrics.add(http::metric_type::gauge, "9lives", "", "", [] { return 0.0; }),
                    std::invalid_argument);
    CHECK_THROWS_AS(metrics.add(http::metric_type::gauge, "a-b", "", "", [] { return 0.0; }),
                    std::invalid_argument);
}
