#include "diagnose/service.hpp"

#include "common/app_options.hpp"

#include <tame/deadline.hpp>
#include <tame/error.hpp>
#include <tame/http/client.hpp>
#include <tame/http/json.hpp>
#include <tame/http/request_context.hpp>

#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/program_options/value_semantic.hpp>
#include <boost/system/system_error.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <array>
#include <string_view>

namespace asio = boost::asio;
namespace po = boost::program_options;

namespace samples {
namespace {

/// The embedded upstream's knowledge base: a few symptoms and what they may
/// point to. Sample data, not medicine.
struct condition {
    std::string_view symptom;
    std::string_view name;
    int likelihood_percent;
};
constexpr std::array knowledge_base{
    condition{"fever", "influenza", 42},         condition{"fever", "common cold", 31},
    condition{"cough", "acute bronchitis", 38},  condition{"cough", "common cold", 27},
    condition{"headache", "migraine", 44},       condition{"headache", "tension headache", 35},
    condition{"rash", "contact dermatitis", 40},
};

boost::json::array candidates(std::string_view symptoms)
{
    boost::json::array out;
    for (const auto& c : knowledge_base) {
        if (symptoms.find(c.symptom) != std::string_view::npos) {
            out.push_back({{"condition", c.name},
                           {"symptom", c.symptom},
                           {"likelihood_percent", c.likelihood_percent}});
        }
    }
    return out;
}

void check_upstream(const std::string& url)
{
    if (url.empty()) {
        return;
    }
    auto parsed = boost::urls::parse_uri(url);
    if (!parsed || parsed->scheme() != "http" || parsed->encoded_host().empty()) {
        throw po::error{"--upstream must be an http:// URL with a host, not '" + url + "'"};
    }
}

} // namespace

void add_diagnose_options(po::options_description& description, diagnose_options& options)
{
    po::options_description diagnose{"tame-diagnose (GET /diagnose, GET /upstream/diagnoses)"};
    diagnose.add_options()(
        "upstream", po::value(&options.upstream)->notifier(check_upstream),
        "the diagnosis service, an http:// URL (default: the embedded /upstream/diagnoses)")(
        "deadline-ms", milliseconds_flag(options.deadline, "deadline-ms"),
        "how long /diagnose waits for the upstream")(
        "upstream-delay-ms", milliseconds_flag(options.upstream_delay, "upstream-delay-ms"),
        "how long the embedded upstream takes to answer")(
        "breaker",
        po::value<std::string>()
            ->default_value(options.breaker ? "on" : "off")
            ->notifier([&options](const std::string& value) {
                if (value != "on" && value != "off") {
                    throw po::error{"--breaker must be on or off, not '" + value + "'"};
                }
                options.breaker = value == "on";
            }),
        "call the upstream through a circuit breaker (on|off): 503 at once while it keeps failing");
    description.add(diagnose);
}

diagnose_service::diagnose_service(const asio::any_io_executor& ex, diagnose_options options)
    : sample_service{ex}, options_{std::move(options)}, time_{options_.time ? options_.time
                                                                            : tame::steady_time()}
{
    check_upstream(options_.upstream);
    upstream_ = options_.upstream;
    if (options_.breaker) {
        tame::breaker_options b;
        b.clock = [time = time_] { return time->now(); };
        breaker_ = std::make_unique<tame::breaker>(std::move(b));
    }
}

void diagnose_service::add_routes(http::router& routes)
{
    routes.get("/diagnose", [this](http::request_context& ctx) { return diagnose(ctx); });
    routes.get("/upstream/diagnoses",
               [this](http::request_context& ctx) { return embedded_upstream(ctx); });
}

void diagnose_service::add_metrics(http::metrics_registry& metrics)
{
    auto outcome = [&](const char* label, std::atomic<std::uint64_t>& count) {
        metrics.add(http::metric_type::counter, "tame_diagnose_upstream_calls_total",
                    "Upstream calls made by /diagnose, by outcome.",
                    std::string{"outcome=\""} + label + "\"", [&count] {
                        return static_cast<double>(count.load(std::memory_order_relaxed));
                    });
    };
    outcome("answered", answered_);
    outcome("timed_out", timed_out_);
    outcome("failed", failed_);
    if (breaker_) {
        const std::string name = "name=\"diagnose_upstream\"";
        metrics.add(
            http::metric_type::gauge, "tame_breaker_state",
            "A circuit breaker's state: 0 closed, 1 open, 2 half-open (a probe on its way).", name,
            [this] { return static_cast<double>(breaker_->state()); });
        auto calls = [&](const char* label, std::uint64_t tame::breaker_stats::*count) {
            metrics.add(http::metric_type::counter, "tame_breaker_requests_total",
                        "Calls decided by a circuit breaker, by outcome.",
                        name + ",outcome=\"" + label + "\"",
                        [this, count] { return static_cast<double>(breaker_->stats().*count); });
        };
        calls("accepted", &tame::breaker_stats::accepted);
        calls("failed", &tame::breaker_stats::failed);
        calls("dropped", &tame::breaker_stats::dropped);
    }
    metrics.add(http::metric_type::counter, "tame_diagnose_upstream_abandoned_total",
                "Calls of the embedded upstream whose caller hung up before the answer.", "",
                [this] {
                    return static_cast<double>(embedded_abandoned_.load(std::memory_order_relaxed));
                });
}

void diagnose_service::on_started(const asio::ip::tcp::endpoint& endpoint)
{
    const std::lock_guard lock{mutex_};
    if (options_.upstream.empty()) {
        // A server listening on every address (0.0.0.0, ::) calls itself on loopback.
        auto address = endpoint.address();
        if (address.is_unspecified()) {
            address = address.is_v6() ? asio::ip::address{asio::ip::address_v6::loopback()}
                                      : asio::ip::address{asio::ip::address_v4::loopback()};
        }
        const auto host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
        upstream_ =
            "http://" + host + ":" + std::to_string(endpoint.port()) + "/upstream/diagnoses";
    }
}

std::string diagnose_service::upstream() const
{
    const std::lock_guard lock{mutex_};
    return upstream_;
}

asio::awaitable<http::response> diagnose_service::diagnose(http::request_context& ctx)
{
    const auto symptoms = ctx.query("symptoms");
    if (!symptoms || symptoms->empty()) {
        throw http::http_error{
            http::status::bad_request,
            "query parameter symptoms is required, as in /diagnose?symptoms=fever,cough"};
    }
    // Re-encoded for the upstream, a symptom may grow threefold ('+' becomes
    // %20): past this length the upstream's request line could outgrow its
    // header limit, and a client's long query would turn into a 502.
    if (symptoms->size() > max_symptoms_length) {
        throw http::http_error{http::status::bad_request,
                               "query parameter symptoms is longer than " +
                                   std::to_string(max_symptoms_length) + " characters"};
    }
    boost::urls::url target{upstream()};
    target.params().set("symptoms", *symptoms);

    // Through the breaker: while the upstream keeps failing, most calls are
    // not made at all, and the client hears so at once. Every way out below
    // marks the call: a success only for a good answer; a failure for a
    // timeout, an unreachable upstream or a bad answer; nothing when our own
    // client left (that says nothing of the upstream).
    tame::breaker::guard call_guard;
    if (breaker_) {
        call_guard = breaker_->allow();
        if (!call_guard) {
            auto refused = http::error_response(
                http::status::service_unavailable,
                "the diagnosis service keeps failing; /diagnose is sparing it for now");
            refused.set(http::field::retry_after, "1");
            co_return refused;
        }
    }

    http::response answer;
    try {
        // context.WithTimeout + select, where the loser really stops: at the
        // deadline the client call is cancelled (its socket closed) and awaited.
        // The deadline is measured on the service's time_source (the steady
        // clock, or a test's manual_time).
        auto call = tame::with_timeout(
            http::async_get(ctx.get_executor(), target.buffer(), asio::use_awaitable),
            options_.deadline, *time_);
        answer = co_await std::move(call);
    } catch (const boost::system::system_error& e) {
        if (e.code() == tame::errc::timed_out) {
            timed_out_.fetch_add(1, std::memory_order_relaxed);
            co_return http::error_response(http::status::request_timeout,
                                           "the diagnosis service did not answer within " +
                                               std::to_string(options_.deadline.count()) +
                                               " ms; please try again later");
        }
        if (ctx.is_cancelled()) {
            call_guard.ignore();
            throw; // our own client went away, or the server is stopping
        }
        failed_.fetch_add(1, std::memory_order_relaxed);
        co_return http::error_response(http::status::bad_gateway,
                                       "the diagnosis service could not be reached: " +
                                           e.code().message());
    }

    if (answer.result() == http::status::service_unavailable) {
        // An overloaded upstream (the embedded one shares this server's
        // in-flight cap) is worth a retry: say so, rather than 502.
        failed_.fetch_add(1, std::memory_order_relaxed);
        auto busy =
            http::error_response(http::status::service_unavailable,
                                 "the diagnosis service is overloaded; please try again later");
        const auto retry_after = answer[http::field::retry_after];
        busy.set(http::field::retry_after, retry_after.empty() ? "1" : std::string{retry_after});
        co_return busy;
    }
    if (answer.result() != http::status::ok) {
        failed_.fetch_add(1, std::memory_order_relaxed);
        co_return http::error_response(http::status::bad_gateway,
                                       "the diagnosis service answered " +
                                           std::to_string(answer.result_int()));
    }
    boost::system::error_code ec;
    auto data = boost::json::parse(answer.body(), ec);
    if (ec) {
        failed_.fetch_add(1, std::memory_order_relaxed);
        co_return http::error_response(http::status::bad_gateway,
                                       "the diagnosis service answered malformed JSON: " +
                                           ec.message());
    }
    answered_.fetch_add(1, std::memory_order_relaxed);
    call_guard.success();
    co_return http::json_response({{"data", std::move(data)}});
}

asio::awaitable<http::response> diagnose_service::embedded_upstream(http::request_context& ctx)
{
    const auto symptoms = ctx.query("symptoms").value_or("");
    const auto ex = co_await asio::this_coro::executor;
    try {
        co_await time_->async_wait_until(ex, time_->now() + options_.upstream_delay,
                                         asio::use_awaitable);
    } catch (const boost::system::system_error&) {
        if (ctx.cancel_reason() == http::cancel_reason::client_gone) {
            embedded_abandoned_.fetch_add(1, std::memory_order_relaxed);
        }
        throw;
    }
    co_return http::json_response({{"symptoms", symptoms}, {"diagnoses", candidates(symptoms)}});
}

} // namespace samples
