#include "report_api/service.hpp"

#include "common/app_options.hpp"
#include "common/elapsed.hpp"

#include <tame/cancel_source.hpp>
#include <tame/error.hpp>
#include <tame/http/json.hpp>
#include <tame/http/request_context.hpp>
#include <tame/wait_group.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <boost/program_options/value_semantic.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace po = boost::program_options;

namespace samples {
namespace {

using clock = std::chrono::steady_clock;

/// What became of one report of a request.
struct report_outcome {
    enum class state { pending, generated, failed, cancelled };
    state result = state::pending;
    std::string error;
};

/// The reports of one request: the pool tasks fill in their outcome, and the
/// request waits for the group (the seed's WaitGroup).
struct report_batch {
    report_batch(const asio::any_io_executor& ex, std::size_t size) : pending{ex}, outcomes(size) {}

    tame::wait_group pending;
    std::vector<report_outcome> outcomes;
};

/// One report: a timer standing for the queries and the PDF. It ends early when
/// its request is cancelled (the client went away, the request was refused),
/// and throws when its id is one of the failing ones.
asio::awaitable<void> generate_report(std::shared_ptr<report_batch> batch, std::size_t index,
                                      std::int64_t id, std::chrono::milliseconds time, bool fails,
                                      tame::cancel_source request)
{
    struct done_at_exit {
        tame::wait_group& group;
        ~done_at_exit() { group.done(); }
    } done{batch->pending};
    auto& outcome = batch->outcomes[index];
    try {
        asio::steady_timer work{co_await asio::this_coro::executor, time};
        auto until_cancelled = request.bind(asio::use_awaitable); // named: g++ 12 (see README)
        co_await work.async_wait(std::move(until_cancelled));
        if (fails) {
            throw std::runtime_error{"report " + std::to_string(id) +
                                     ": the source data is incomplete"};
        }
        outcome.result = report_outcome::state::generated;
    } catch (const std::exception& e) {
        if (request.cancelled()) {
            // The request no longer wants it: not a failure of the report.
            outcome.result = report_outcome::state::cancelled;
            co_return;
        }
        outcome.result = report_outcome::state::failed;
        outcome.error = e.what();
        throw; // to the pool's on_exception, which logs it: ants' PanicHandler
    }
}

http::response overloaded(std::chrono::seconds retry_after)
{
    auto res = http::error_response(http::status::service_unavailable,
                                    "the report pool is full; retry in " +
                                        std::to_string(retry_after.count()) + " s");
    res.set(http::field::retry_after, std::to_string(retry_after.count()));
    return res;
}

tame::task_pool_options pool_options(const report_api_options& options)
{
    tame::task_pool_options pool;
    pool.capacity = options.pool_capacity;
    pool.max_waiting = options.nonblocking ? 0 : tame::task_pool_options::unlimited;
    pool.single_threaded = options.single_threaded;
    pool.on_exception = [](std::exception_ptr failure) {
        try {
            std::rethrow_exception(failure);
        } catch (const std::exception& e) {
            std::cerr << "tame-report-api: a report failed: " << e.what() << std::endl;
        } catch (...) {
            std::cerr << "tame-report-api: a report failed with an unknown exception" << std::endl;
        }
    };
    return pool;
}

} // namespace

void add_report_api_options(po::options_description& description, report_api_options& options)
{
    po::options_description reports{"tame-report-api (POST /reports/generate)"};
    reports.add_options()(
        "pool-size",
        count_flag(options.pool_capacity, "pool-size", 1, tame::async_semaphore::max_capacity),
        "reports generated at once (the task pool's capacity)")(
        "report-ms", milliseconds_flag(options.report_time, "report-ms"),
        "how long one report takes, ms")(
        "max-reports", count_flag(options.max_reports, "max-reports", 0, std::size_t{1} << 30),
        "the most reportIds one request may hold")(
        "nonblocking", po::bool_switch(&options.nonblocking),
        "refuse a request with 503 + Retry-After when the pool is full, instead of waiting")(
        "fail-ids",
        po::value<std::vector<std::int64_t>>()->multitoken()->notifier(
            [&options](const std::vector<std::int64_t>& ids) {
                options.failing_ids.insert(ids.begin(), ids.end());
            }),
        "report ids whose generation fails (to watch a failure stay contained)");
    description.add(reports);
}

report_api_service::report_api_service(const asio::any_io_executor& ex, report_api_options options)
    : sample_service{ex}, options_{std::move(options)}, pool_{ex, pool_options(options_)}
{
}

void report_api_service::add_routes(http::router& routes)
{
    routes.post("/reports/generate", [this](http::request_context& ctx) { return generate(ctx); });
}

void report_api_service::add_metrics(http::metrics_registry& metrics)
{
    metrics.add_task_pool("reports", pool_);
}

void report_api_service::do_async_stop(asio::any_completion_handler<void(error_code)> done)
{
    pool_.async_shutdown(std::chrono::seconds{0}, [done = std::move(done)](std::size_t) mutable {
        std::move(done)(error_code{});
    });
}

std::vector<std::int64_t> report_api_service::report_ids(const http::request& req) const
{
    const auto body = http::parse_json_object(req);
    const auto* ids = body.if_contains("reportIds");
    if (ids == nullptr) {
        throw http::http_error{http::status::bad_request, "reportIds is missing"};
    }
    if (!ids->is_array()) {
        throw http::http_error{http::status::bad_request,
                               "reportIds must be an array of positive integers"};
    }
    const auto& array = ids->get_array();
    if (array.size() > options_.max_reports) {
        throw http::http_error{http::status::bad_request,
                               "too many reportIds: " + std::to_string(array.size()) +
                                   " (at most " + std::to_string(options_.max_reports) + ")"};
    }
    std::vector<std::int64_t> out;
    out.reserve(array.size());
    for (std::size_t i = 0; i < array.size(); ++i) {
        const auto& id = array[i];
        const bool positive =
            (id.is_int64() && id.get_int64() > 0) ||
            (id.is_uint64() && id.get_uint64() <= static_cast<std::uint64_t>(
                                                      std::numeric_limits<std::int64_t>::max()));
        if (!positive) {
            throw http::http_error{http::status::bad_request,
                                   "reportIds[" + std::to_string(i) +
                                       "] must be a positive integer, not " +
                                       boost::json::serialize(id)};
        }
        out.push_back(id.is_int64() ? id.get_int64() : static_cast<std::int64_t>(id.get_uint64()));
    }
    return out;
}

asio::awaitable<http::response> report_api_service::generate(http::request_context& ctx)
{
    const auto ids = report_ids(ctx.request());
    if (options_.nonblocking) {
        // A nonblocking service takes a request whole or not at all: more ids
        // than the pool has slots could never be taken, and a pool without
        // room for all of them now is full for this request.
        if (ids.size() > pool_.capacity()) {
            throw http::http_error{
                http::status::bad_request,
                "too many reportIds for a nonblocking service: " + std::to_string(ids.size()) +
                    " (the pool runs at most " + std::to_string(pool_.capacity()) + ")"};
        }
        if (ids.size() > pool_.capacity() - std::min(pool_.running(), pool_.capacity())) {
            co_return overloaded(options_.retry_after);
        }
    }
    const auto started = clock::now();
    auto batch = std::make_shared<report_batch>(ctx.get_executor(), ids.size());
    // The reports of this request: cancelled with it (its client went away, the
    // server's drain ended), or when the pool refuses one of them.
    auto reports = ctx.cancellation().make_child();

    for (std::size_t i = 0; i < ids.size(); ++i) {
        auto task = [batch, i, id = ids[i], time = options_.report_time,
                     fails = options_.failing_ids.count(ids[i]) != 0,
                     reports] { return generate_report(batch, i, id, time, fails, reports); };
        batch->pending.add(1);
        // A blocking service waits for a slot (the backpressure of ants'
        // Submit); a nonblocking one refuses the request when the pool is full.
        tame::error_code refused;
        if (options_.nonblocking) {
            refused = pool_.try_submit(std::move(task));
        } else {
            try {
                co_await pool_.async_submit(std::move(task), asio::use_awaitable);
            } catch (const boost::system::system_error& e) {
                if (e.code() != tame::errc::closed) {
                    batch->pending.done();
                    reports.emit();
                    throw; // cancelled: the client went away, or the drain ended
                }
                refused = e.code();
            }
        }
        if (refused) {
            // Refuse the whole request, leaving nothing of it running: cancel the
            // reports it started, and wait for them (they end at once).
            batch->pending.done();
            reports.emit();
            co_await batch->pending.async_wait(asio::use_awaitable);
            if (refused == tame::errc::closed) {
                throw http::http_error{http::status::service_unavailable,
                                       "the service is shutting down"};
            }
            co_return overloaded(options_.retry_after);
        }
    }
    co_await batch->pending.async_wait(asio::use_awaitable);

    boost::json::array failed;
    std::size_t generated = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto& outcome = batch->outcomes[i];
        if (outcome.result == report_outcome::state::generated) {
            ++generated;
        } else {
            failed.push_back(
                {{"id", ids[i]}, {"error", outcome.error.empty() ? "cancelled" : outcome.error}});
        }
    }
    co_return http::json_response({
        {"message", "processed " + std::to_string(ids.size()) + " report generation tasks"},
        {"reports", ids.size()},
        {"generated", generated},
        {"failed", std::move(failed)},
        {"elapsed_ms", elapsed_ms(started)},
    });
}

} // namespace samples
