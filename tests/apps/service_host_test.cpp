#include "hosted_service.hpp"

#include "report_api/service.hpp"
#include "sync_data/service.hpp"

#include <catch2/catch.hpp>

#include <boost/beast/http/verb.hpp>

#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace apps_test;

namespace {

/// A service whose routes are another's, counting the requests that reach
/// their handlers: the requests the server began serving.
class counted_service : public samples::sample_service {
  public:
    explicit counted_service(samples::sample_service& inner) : inner_{inner} {}

    void add_routes(http::router& routes) override
    {
        http::router own;
        inner_.add_routes(own);
        for (std::size_t i = 0; i < own.size(); ++i) {
            const std::string& label = own.label(i); // "POST /sync-data"
            const auto space = label.find(' ');
            routes.add(boost::beast::http::string_to_verb(label.substr(0, space)),
                       label.substr(space + 1),
                       [this, handle = own.handler_at(i)](http::request_context& ctx) {
                           ++begun;
                           return handle(ctx);
                       });
        }
    }
    void add_metrics(http::metrics_registry& metrics) override { inner_.add_metrics(metrics); }
    void async_stop(std::function<void()> done) override { inner_.async_stop(std::move(done)); }

    std::atomic<int> begun{0};

  private:
    samples::sample_service& inner_;
};

/// sync-data and report-api on one server, as tame-samples hosts them, with the
/// server's access log counting the answers by status.
struct sync_and_reports {
    explicit sync_and_reports(std::chrono::milliseconds report_time)
        : sync{io.get_executor(), samples::sync_data_options{}}, reports{io.get_executor(),
                                                                         report_options(
                                                                             report_time)},
          host{io, {&counted_sync, &counted_reports}, server_options()}
    {
        host.start();
        for (int i = 0; i < 2; ++i) {
            threads.emplace_back([this] { io.run(); });
        }
    }

    ~sync_and_reports()
    {
        shutdown(0ms);
        for (auto& t : threads) {
            t.join();
        }
    }

    static samples::report_api_options report_options(std::chrono::milliseconds report_time)
    {
        samples::report_api_options o;
        o.report_time = report_time;
        return o;
    }

    http::server_options server_options()
    {
        auto o = tame_test::test_options();
        o.access_log = [this](const http::access_entry& e) {
            const std::lock_guard lock{mutex};
            ++logged[e.status];
        };
        return o;
    }

    /// The host's shutdown: the handlers cancelled at the drain's end, once the
    /// services have stopped too; nothing if that took over 20 s.
    std::optional<std::size_t> shutdown(std::chrono::milliseconds drain)
    {
        if (stopped) {
            return std::nullopt;
        }
        stopped = true;
        std::promise<std::size_t> done;
        auto future = done.get_future();
        host.async_shutdown(drain, [&done](std::size_t cancelled) { done.set_value(cancelled); });
        if (future.wait_for(20s) != std::future_status::ready) {
            io.stop();
            return std::nullopt;
        }
        return future.get();
    }

    std::uint16_t port() const { return host.server().local_endpoint().port(); }
    int begun() const { return counted_sync.begun + counted_reports.begun; }
    std::map<unsigned, int> answers_logged()
    {
        const std::lock_guard lock{mutex};
        return logged;
    }

    asio::io_context io;
    samples::sync_data_service sync;
    samples::report_api_service reports;
    counted_service counted_sync{sync};
    counted_service counted_reports{reports};
    std::mutex mutex;
    std::map<unsigned, int> logged;
    samples::service_host host;
    std::vector<std::thread> threads;
    bool stopped = false;
};

/// What one client saw: an answer, a refused connection, or a connection
/// closed before any answer.
struct outcome {
    enum class kind { answered, refused, closed } what = kind::closed;
    unsigned status = 0;
    std::string error;
};

outcome one_request(std::uint16_t port, int i, const std::string& sync_target)
{
    std::unique_ptr<tame_test::raw_client> client;
    try {
        client = std::make_unique<tame_test::raw_client>(port);
    } catch (const boost::system::system_error&) {
        return {outcome::kind::refused, 0, {}};
    }
    const std::string body = R"({"reportIds":[1,2]})";
    try {
        client->send(i % 2 == 0
                         ? tame_test::request_text("POST", sync_target)
                         : tame_test::request_text("POST", "/reports/generate",
                                                   "Content-Type: application/json\r\n", body));
    } catch (const boost::system::system_error&) {
        return {outcome::kind::closed, 0, {}};
    }
    auto res = client->read_response(false, 20s);
    if (!res) {
        return {outcome::kind::closed, 0, {}};
    }
    answer a{std::move(*res), {}};
    boost::system::error_code ec;
    a.json = boost::json::parse(a.response.body(), ec);
    return {outcome::kind::answered, a.status(), a.error()};
}

/// Clients `first` to `first + count`, each on a thread of its own, writing
/// their outcome into `out`.
void start_clients(std::vector<std::jthread>& threads, std::vector<outcome>& out, int first,
                   int count, std::uint16_t port, const std::string& sync_target)
{
    for (int i = first; i < first + count; ++i) {
        threads.emplace_back([&out, i, port, sync_target] {
            out[static_cast<std::size_t>(i)] = one_request(port, i, sync_target);
        });
    }
}

/// tame_http_connections_total: the connections the server accepted.
int connections_accepted(http::server& server)
{
    const auto text = server.metrics().render();
    const std::string series = "\ntame_http_connections_total ";
    const auto at = text.find(series) + series.size();
    return std::stoi(text.substr(at, text.find('\n', at) - at));
}

int count(const std::vector<outcome>& outcomes, outcome::kind what)
{
    return static_cast<int>(std::count_if(outcomes.begin(), outcomes.end(),
                                          [what](const outcome& o) { return o.what == what; }));
}

} // namespace

TEST_CASE("a shutdown under load answers every request the server began, and refuses the rest at "
          "connection level",
          "[apps][service_host][faults]")
{
    // 120 clients, half sync batches and half report requests of about 100 ms:
    // 80 in their handlers when the shutdown starts, 40 more connecting as it does.
    constexpr int in_flight = 80;
    constexpr int late = 40;
    sync_and_reports services{100ms};
    std::vector<outcome> outcomes(in_flight + late);
    std::vector<std::jthread> clients;
    const std::string sync_target = "/sync-data?tasks=4&concurrency=2&task_ms=50";
    start_clients(clients, outcomes, 0, in_flight, services.port(), sync_target);
    REQUIRE(eventually([&] { return services.begun() == in_flight; }));

    start_clients(clients, outcomes, in_flight, late, services.port(), sync_target);
    const auto cancelled = services.shutdown(10s);
    clients.clear(); // joins

    REQUIRE(cancelled);
    CHECK(*cancelled == 0u);
    const int answered = count(outcomes, outcome::kind::answered);
    const int refused = count(outcomes, outcome::kind::refused);
    const int closed = count(outcomes, outcome::kind::closed);
    const auto accepted = connections_accepted(services.host.server());
    INFO("answered " << answered << ", refused " << refused << ", closed unanswered " << closed
                     << ", accepted " << accepted);
    // Every request the server began was answered, and every answer was a
    // success: the drain was long enough for all of them.
    CHECK(answered == services.begun());
    CHECK(answered >= in_flight);
    for (const auto& o : outcomes) {
        if (o.what == outcome::kind::answered) {
            CHECK(o.status == 200);
        }
    }
    const auto logged = services.answers_logged();
    CHECK(logged.size() == 1);
    CHECK(logged.count(200) == 1);
    CHECK(logged.find(200)->second == answered);
    // The other clients failed at connection level, without a byte of an
    // answer: refused once the acceptor had closed, reset when it closed with
    // their connection still in the listen backlog (the kernel had completed
    // the handshake, the server never accepted it), or, accepted but idle when
    // the shutdown began, closed before their request arrived.
    CHECK(answered + refused + closed == in_flight + late);
    CHECK(accepted >= answered);
    CHECK(services.host.server().metrics().connections() == 0);
    CHECK(services.reports.pool().running() == 0);
    CHECK(services.sync.running_tasks() == 0);
}

TEST_CASE("a shutdown whose drain is too short answers 503 to every request in flight",
          "[apps][service_host][faults]")
{
    // Batches of 10 s and reports of 10 s: none can finish within the drain.
    constexpr int in_flight = 100;
    sync_and_reports services{10000ms};
    std::vector<outcome> outcomes(in_flight);
    std::vector<std::jthread> clients;
    start_clients(clients, outcomes, 0, in_flight, services.port(),
                  "/sync-data?tasks=10&concurrency=1&task_ms=1000");
    REQUIRE(eventually([&] { return services.begun() == in_flight; }));

    const auto started = std::chrono::steady_clock::now();
    const auto cancelled = services.shutdown(50ms);
    const auto took = std::chrono::steady_clock::now() - started;
    clients.clear(); // joins

    REQUIRE(cancelled);
    CHECK(*cancelled == std::size_t{in_flight});
    CHECK(took < 5s);
    CHECK(count(outcomes, outcome::kind::answered) == in_flight);
    for (const auto& o : outcomes) {
        INFO(o.error);
        CHECK(o.status == 503);
        CHECK(o.error.find("shutting down") != std::string::npos);
    }
    const auto logged = services.answers_logged();
    CHECK(logged.size() == 1);
    CHECK(logged.count(503) == 1);
    CHECK(logged.find(503)->second == in_flight);
    CHECK(services.reports.pool().running() == 0);
    CHECK(services.sync.running_tasks() == 0);
}
