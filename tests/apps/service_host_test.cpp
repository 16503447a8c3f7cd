#include "hosted_service.hpp"

#include "report_api/service.hpp"
#include "sync_data/service.hpp"

#include <tame/manual_time.hpp>
#include <tame/time_source.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/http/verb.hpp>

#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace apps_test;

namespace {

/// A service whose routes are another's, counting the requests that reach
/// their handlers: the requests the server began serving.
class counted_service : public samples::sample_service {
  public:
    explicit counted_service(samples::sample_service& inner)
        : sample_service{inner.get_executor()}, inner_{inner}
    {
    }

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

    std::atomic<int> begun{0};

  private:
    void do_async_stop(asio::any_completion_handler<void(tame::error_code)> done) override
    {
        inner_.async_stop(std::move(done));
    }

    samples::sample_service& inner_;
};

/// sync-data and report-api on one server, as tame-samples hosts them, with the
/// server's access log counting the answers by status. The server measures its
/// timeouts and drain period on `time`.
struct sync_and_reports {
    explicit sync_and_reports(std::chrono::milliseconds report_time,
                              std::shared_ptr<tame::time_source> time = tame::steady_time())
        : sync{io.get_executor(), samples::sync_data_options{}}, reports{io.get_executor(),
                                                                         report_options(
                                                                             report_time)},
          host{io, {&counted_sync, &counted_reports}, server_options(std::move(time))}
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

    http::server_options server_options(std::shared_ptr<tame::time_source> time)
    {
        auto o = tame_test::test_options(std::move(time));
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
        auto future = host.async_shutdown(drain, asio::use_future);
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

/// A service with no routes whose stop ends when the test calls finish(): the
/// contract of async_stop(), whatever a real service's work is.
class manual_stop_service : public samples::sample_service {
  public:
    explicit manual_stop_service(const asio::any_io_executor& ex) : sample_service{ex} {}

    void add_routes(http::router&) override {}
    void add_metrics(http::metrics_registry&) override {}

    /// Whether a stop has begun and not yet been finished.
    bool stopping() const noexcept { return done_.has_value(); }

    /// Ends the work: calls the stop's completion here, on the test's thread.
    void finish(tame::error_code ec = {})
    {
        REQUIRE(done_);
        auto done = std::move(*done_);
        done_.reset();
        std::move(done)(ec);
    }

  private:
    void do_async_stop(asio::any_completion_handler<void(tame::error_code)> done) override
    {
        done_.emplace(std::move(done));
    }

    std::optional<asio::any_completion_handler<void(tame::error_code)>> done_;
};

/// Runs `io` until `done()` holds, waiting at most 10 ms for each handler.
bool run_until(asio::io_context& io, const std::function<bool()>& done)
{
    for (int i = 0; i < 500 && !done(); ++i) {
        io.run_one_for(10ms);
    }
    return done();
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

TEST_CASE("a shutdown whose drain is too short answers 503 to every request in flight, once the "
          "drain has ended",
          "[apps][service_host][faults]")
{
    // Batches of 10 s and reports of 10 s: none can finish within the drain.
    constexpr int in_flight = 100;
    auto time = std::make_shared<tame::manual_time>();
    sync_and_reports services{10000ms, time};
    std::vector<outcome> outcomes(in_flight);
    std::vector<std::jthread> clients;
    start_clients(clients, outcomes, 0, in_flight, services.port(),
                  "/sync-data?tasks=10&concurrency=1&task_ms=1000");
    REQUIRE(eventually([&] { return services.begun() == in_flight; }));

    auto shutdown = services.host.async_shutdown(50ms, asio::use_future);
    // The server's sweeper and the drain period wait on the server's clock.
    REQUIRE(eventually([&] { return time->waiting() == 2; }));
    CHECK(shutdown.wait_for(0s) == std::future_status::timeout);
    CHECK(services.answers_logged().empty());
    time->advance(50ms);
    REQUIRE(shutdown.wait_for(20s) == std::future_status::ready);
    services.stopped = true;
    const auto cancelled = shutdown.get();
    clients.clear(); // joins

    CHECK(cancelled == std::size_t{in_flight});
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

TEST_CASE("a service's stop completes on the handler's executor once its work has ended, never "
          "inside a call",
          "[apps][service_host]")
{
    asio::io_context io;
    manual_stop_service service{io.get_executor()};
    auto strand = asio::make_strand(io);
    std::optional<tame::error_code> result;
    bool on_strand = false;

    service.async_stop(asio::bind_executor(strand, [&](tame::error_code ec) {
        result = ec;
        on_strand = strand.running_in_this_thread();
    }));
    REQUIRE(service.stopping());
    io.poll();
    // Pending, it counts as work: the io_context did not run out of it.
    CHECK_FALSE(io.stopped());
    CHECK_FALSE(result);

    service.finish(); // the work ends on this thread, outside any handler
    CHECK_FALSE(result);
    io.poll();

    REQUIRE(result);
    CHECK_FALSE(*result);
    CHECK(on_strand);
}

TEST_CASE("a cancellation signal does not end a service's stop before its work has ended",
          "[apps][service_host]")
{
    asio::io_context io;
    manual_stop_service service{io.get_executor()};
    asio::cancellation_signal signal;
    std::optional<tame::error_code> result;
    service.async_stop(
        asio::bind_cancellation_slot(signal.slot(), [&](tame::error_code ec) { result = ec; }));

    for (auto type : {asio::cancellation_type::partial, asio::cancellation_type::total,
                      asio::cancellation_type::terminal}) {
        signal.emit(type);
        io.poll();
    }
    CHECK_FALSE(result);
    CHECK(service.stopping());

    service.finish();
    io.poll();

    REQUIRE(result);
    CHECK_FALSE(*result);
}

TEST_CASE("stopping the services completes once every one has stopped, with the first error",
          "[apps][service_host]")
{
    asio::io_context io;
    manual_stop_service first{io.get_executor()};
    manual_stop_service second{io.get_executor()};
    samples::service_host host{io, {&first, &second}, tame_test::test_options()};
    std::optional<tame::error_code> result;

    host.async_stop_services([&](tame::error_code ec) { result = ec; });
    io.poll();
    REQUIRE(first.stopping());
    REQUIRE(second.stopping());
    second.finish(asio::error::connection_aborted);
    io.poll();
    CHECK_FALSE(result);
    first.finish(asio::error::broken_pipe);
    io.poll();

    REQUIRE(result);
    CHECK(*result == asio::error::connection_aborted);
}

TEST_CASE("stopping no services completes through the executor, not inside the call",
          "[apps][service_host]")
{
    asio::io_context io;
    samples::service_host host{io, {}, tame_test::test_options()};
    std::optional<tame::error_code> result;

    host.async_stop_services([&](tame::error_code ec) { result = ec; });
    CHECK_FALSE(result);
    io.poll();

    REQUIRE(result);
    CHECK_FALSE(*result);
}

TEST_CASE("the host's shutdown stops the services after the server and completes once they have "
          "stopped, on the handler's executor",
          "[apps][service_host]")
{
    asio::io_context io;
    manual_stop_service service{io.get_executor()};
    samples::service_host host{io, {&service}, tame_test::test_options()};
    host.start();
    auto strand = asio::make_strand(io);
    std::optional<std::size_t> cancelled;
    bool on_strand = false;

    host.async_shutdown(0ms, asio::bind_executor(strand, [&](std::size_t n) {
                            cancelled = n;
                            on_strand = strand.running_in_this_thread();
                        }));
    REQUIRE(run_until(io, [&] { return service.stopping(); }));
    CHECK(host.server().is_stopping());
    io.poll();
    CHECK_FALSE(cancelled); // the service's work has not ended yet

    service.finish();
    io.poll();

    REQUIRE(cancelled);
    CHECK(*cancelled == 0u);
    CHECK(on_strand);
}
