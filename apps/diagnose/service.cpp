#include "diagnose/service.hpp"

#include "common/app_options.hpp"

#include <tame/aimd_limit.hpp>
#include <tame/deadline.hpp>
#include <tame/error.hpp>
#include <tame/gradient2_limit.hpp>
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

void check_limit(const std::string& algorithm)
{
    if (algorithm != "gradient2" && algorithm != "aimd" && algorithm != "off") {
        throw po::error{"--upstream-limit must be gradient2, aimd or off, not '" + algorithm + "'"};
    }
}

/// The upstream's limit: Netflix's defaults within the bounds given, starting
/// at their 20 (or the nearest bound).
std::unique_ptr<tame::limit_algorithm> make_limit_algorithm(const diagnose_options& options)
{
    const std::size_t max = options.upstream_limit_max;
    const std::size_t min = std::min(options.upstream_limit_min, max);
    const std::size_t initial = std::clamp<std::size_t>(20, min, max);
    if (options.upstream_limit == "aimd") {
        tame::aimd_options o;
        o.min_limit = min;
        o.initial_limit = initial;
        o.max_limit = options.upstream_limit_max;
        // A call that reaches the deadline is a timeout to the limit too.
        o.timeout = options.deadline;
        return std::make_unique<tame::aimd_limit>(o);
    }
    tame::gradient2_options o;
    o.min_limit = min;
    o.initial_limit = initial;
    o.max_limit = options.upstream_limit_max;
    return std::make_unique<tame::gradient2_limit>(o);
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
        "call the upstream through a circuit breaker (on|off): 503 at once while it keeps failing")(
        "upstream-limit",
        po::value(&options.upstream_limit)
            ->default_value(options.upstream_limit)
            ->notifier(check_limit),
        "how the limit on concurrent upstream calls moves: gradient2 (with latency), aimd (with "
        "timeouts and failures) or off; calls over it get 503 at once")(
        "upstream-limit-min",
        count_flag(options.upstream_limit_min, "upstream-limit-min", 1, 100000),
        "the fewest concurrent upstream calls the limit may shrink to")(
        "upstream-limit-max",
        count_flag(options.upstream_limit_max, "upstream-limit-max", 1, 100000),
        "the most concurrent upstream calls the limit may grow to");
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
    check_limit(options_.upstream_limit);
    if (options_.upstream_limit != "off") {
        limit_ = std::make_unique<tame::adaptive_limit>(ex, make_limit_algorithm(options_),
                                                        [time = time_] { return time->now(); });
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
    if (limit_) {
        const std::string name = "name=\"diagnose_upstream\"";
        metrics.add(http::metric_type::gauge, "tame_limit",
                    "An adaptive concurrency limit: the calls it lets run at once now.", name,
                    [this] { return static_cast<double>(limit_->limit()); });
        metrics.add(http::metric_type::gauge, "tame_limit_in_flight",
                    "Calls running under an adaptive concurrency limit.", name,
                    [this] { return static_cast<double>(limit_->in_flight()); });
        metrics.add(
            http::metric_type::counter, "tame_limit_rejected_total",
            "Calls refused because an adaptive concurrency limit was reached.", name,
            [this] { return static_cast<double>(limit_refused_.load(std::memory_order_relaxed)); });
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
    // Under the upstream's adaptive limit: over it, the call is refused at
    // once rather than queued behind calls that may take the whole deadline.
    // The permit's mark is the limit's sample: dropped for a timeout, an
    // unreachable upstream or its 503; success for any other answer; nothing
    // when our own client left (or the breaker below refused the call).
    tame::adaptive_permit slot;
    if (limit_) {
        slot = limit_->try_acquire();
        if (!slot) {
            limit_refused_.fetch_add(1, std::memory_order_relaxed);
            auto refused = http::error_response(
                http::status::service_unavailable,
                "too many calls to the diagnosis service at once; please try again shortly");
            refused.set(http::field::retry_after, "1");
            co_return refused;
        }
    }

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
            slot.dropped();
            co_return http::error_response(http::status::request_timeout,
                                           "the diagnosis service did not answer within " +
                                               std::to_string(options_.deadline.count()) +
                                               " ms; please try again later");
        }
        if (ctx.is_cancelled()) {
            call_guard.ignore();
            slot.ignore();
            throw; // our own client went away, or the server is stopping
        }
        failed_.fetch_add(1, std::memory_order_relaxed);
        slot.dropped();
        co_return http::error_response(http::status::bad_gateway,
                                       "the diagnosis service could not be reached: " +
                                           e.code().message());
    }

    if (answer.result() == http::status::service_unavailable) {
        // An overloaded upstream (the embedded one shares this server's
        // in-flight cap) is worth a retry: say so, rather than 502.
        failed_.fetch_add(1, std::memory_order_relaxed);
        slot.dropped();
        auto busy =
            http::error_response(http::status::service_unavailable,
                                 "the diagnosis service is overloaded; please try again later");
        const auto retry_after = answer[http::field::retry_after];
        busy.set(http::field::retry_after, retry_after.empty() ? "1" : std::string{retry_after});
        co_return busy;
    }
    // Any other answer came in its time: its latency is a sample all the same
    // (the breaker, not the limit, counts it as a failure).
    slot.success();
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
