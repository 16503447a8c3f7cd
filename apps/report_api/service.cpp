#include "report_api/service.hpp"

#include "common/app_options.hpp"
#include "common/elapsed.hpp"

#include <tame/error.hpp>
#include <tame/http/json.hpp>
#include <tame/http/request_context.hpp>
#include <tame/task_group.hpp>
#include <tame/with_task_group.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
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
    enum class state { cancelled, generated, failed };
    state result = state::cancelled;
    std::string error;
};

/// One report, as the pool runs it: a timer standing for the queries and the
/// PDF. Cut short (its request gave it up), it ends normally, as cancelled: the
/// report did not fail, so the pool counts it as completed. Throws when its id
/// is one of the failing ones.
asio::awaitable<report_outcome::state> generate_report(std::int64_t id,
                                                       std::chrono::milliseconds time, bool fails)
{
    asio::steady_timer work{co_await asio::this_coro::executor, time};
    auto [cut_short] = co_await work.async_wait(asio::as_tuple(asio::use_awaitable));
    if (cut_short) {
        co_return report_outcome::state::cancelled;
    }
    if (fails) {
        throw std::runtime_error{"report " + std::to_string(id) +
                                 ": the source data is incomplete"};
    }
    co_return report_outcome::state::generated;
}

/// Records a failed report and logs it (ants' PanicHandler, in the request).
void report_failed(report_outcome& outcome, std::string what)
{
    std::cerr << "tame-report-api: a report failed: " << what << std::endl;
    outcome.result = report_outcome::state::failed;
    outcome.error = std::move(what);
}

/// Whether a pool refused a report (the request is then refused whole) or
/// gave up waiting for a slot because the request was cancelled.
bool refused_or_cancelled(const tame::error_code& ec)
{
    return ec == tame::errc::pool_overloaded || ec == tame::errc::closed ||
           ec == asio::error::operation_aborted;
}

/// One report of a request, as a task of the request's group: the pool runs
/// the report (after waiting for a slot, in blocking mode: the backpressure of
/// ants' Submit) and async_run waits for its end, a join handle. Cancelling
/// this task cancels the wait, or the report. A refusal or a cancellation is
/// thrown, for the request; a report's own failure is recorded and logged, and
/// the request's other reports go on.
asio::awaitable<void> run_report(tame::task_pool& pool, const report_api_options& options,
                                 std::int64_t id, report_outcome& outcome)
{
    auto report = [id, time = options.report_time, fails = options.failing_ids.count(id) != 0] {
        return generate_report(id, time, fails);
    };
    try {
        outcome.result = co_await pool.async_run(std::move(report), asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
        if (refused_or_cancelled(e.code())) {
            throw;
        }
        report_failed(outcome, e.what());
    } catch (const std::exception& e) {
        report_failed(outcome, e.what());
    } catch (...) {
        report_failed(outcome, "an unknown exception");
    }
    if (outcome.result == report_outcome::state::cancelled) {
        // Its request gave it up: the task ends as a cancelled one does.
        throw boost::system::system_error{asio::error::operation_aborted};
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
    std::vector<report_outcome> outcomes(ids.size());
    // The request's reports are the tasks of one group, which is always joined:
    // the request answers once every report has ended. Cancelling the request
    // (its client went away, the drain ended) cancels the group; so does a
    // report that the pool refuses, and the request is then refused whole.
    auto run_all = [&](tame::task_group& reports) -> asio::awaitable<void> {
        for (std::size_t i = 0; i < ids.size(); ++i) {
            auto report = [this, id = ids[i], &outcome = outcomes[i]] {
                return run_report(pool_, options_, id, outcome);
            };
            co_await reports.spawn(std::move(report));
        }
    };
    try {
        co_await tame::with_task_group(ctx.get_executor(), 0, std::move(run_all));
    } catch (const boost::system::system_error& e) {
        if (e.code() == tame::errc::pool_overloaded) {
            co_return overloaded(options_.retry_after);
        }
        if (e.code() == tame::errc::closed) {
            throw http::http_error{http::status::service_unavailable,
                                   "the service is shutting down"};
        }
        throw; // cancelled: the client went away, or the drain ended
    }

    boost::json::array failed;
    std::size_t generated = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto& outcome = outcomes[i];
        if (outcome.result == report_outcome::state::generated) {
            ++generated;
        } else {
            failed.push_back({{"id", ids[i]}, {"error", outcome.error}});
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
