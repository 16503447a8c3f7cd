#include "report_api/service.hpp"

#include "common/app_options.hpp"
#include "common/elapsed.hpp"

#include <tame/error.hpp>
#include <tame/http/json.hpp>
#include <tame/http/request_context.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <boost/program_options/value_semantic.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <exception>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace asio = boost::asio;
namespace po = boost::program_options;

namespace samples {
namespace {

using clock = std::chrono::steady_clock;

/// How a report that ran ended, unless it threw.
enum class report_end { generated, cut_short };

/// One report, as the pool runs it: a timer standing for the queries and the
/// PDF. Cut short (its request gave it up), it ends normally: the report did
/// not fail, so the pool counts it as completed. Throws when its id is one of
/// the failing ones.
asio::awaitable<report_end> generate_report(std::int64_t id, std::chrono::milliseconds time,
                                            bool fails)
{
    asio::steady_timer work{co_await asio::this_coro::executor, time};
    auto [cut_short] = co_await work.async_wait(asio::as_tuple(asio::use_awaitable));
    if (cut_short) {
        co_return report_end::cut_short;
    }
    if (fails) {
        throw std::runtime_error{"report " + std::to_string(id) +
                                 ": the source data is incomplete"};
    }
    co_return report_end::generated;
}

/// A report as a pool task: a named type, since a request keeps the runs of
/// its reports in a vector.
struct report_task {
    std::int64_t id = 0;
    std::chrono::milliseconds time{0};
    bool fails = false;

    asio::awaitable<report_end> operator()() const { return generate_report(id, time, fails); }
};

/// Why the pool did not run a report: it refused it (errc::pool_overloaded,
/// errc::closed) or its wait for a slot was cancelled (operation_aborted).
/// None when the report ran, whether it returned or threw.
tame::error_code not_run(const std::exception_ptr& failure)
{
    if (failure) {
        try {
            std::rethrow_exception(failure);
        } catch (const boost::system::system_error& e) {
            if (e.code() == tame::errc::pool_overloaded || e.code() == tame::errc::closed ||
                e.code() == asio::error::operation_aborted) {
                return e.code();
            }
        } catch (...) {
        }
    }
    return {};
}

/// The parallel group's cancellation condition: a report that the pool
/// refuses refuses its whole request, so it cancels the request's others.
asio::cancellation_type a_refusal_cancels_the_rest(const std::exception_ptr& failure, report_end)
{
    const auto why = not_run(failure);
    return why == tame::errc::pool_overloaded || why == tame::errc::closed
               ? asio::cancellation_type::terminal
               : asio::cancellation_type::none;
}

/// What a report that threw says; logged as the pool's on_exception (ants'
/// PanicHandler) would, since async_run hands the exception to the request.
std::string report_failure(const std::exception_ptr& failure)
{
    std::string what = "an unknown exception";
    try {
        std::rethrow_exception(failure);
    } catch (const std::exception& e) {
        what = e.what();
    } catch (...) {
    }
    std::cerr << "tame-report-api: a report failed: " << what << std::endl;
    return what;
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
    // One async_run per report: it waits for a slot (in blocking mode: the
    // backpressure of ants' Submit), runs the report on the pool and completes
    // once the report has ended, with its result: a join handle. Bound to the
    // request's executor, so that the runs complete, and their cancellation
    // slots are used, there, one at a time, and not on the pool's threads.
    auto on_request = asio::bind_executor(ctx.get_executor(), asio::deferred);
    std::vector<decltype(pool_.async_run(report_task{}, on_request))> runs;
    runs.reserve(ids.size());
    for (const auto id : ids) {
        const bool fails = options_.failing_ids.count(id) != 0;
        runs.push_back(pool_.async_run(report_task{id, options_.report_time, fails}, on_request));
    }
    // Awaited together and joined: the group completes once every run has
    // ended. Cancelling the request (its client went away, the drain ended)
    // cancels them all, and so does a report that the pool refuses. (Asio
    // 1.81's parallel_group of no operation never completes: hence the test.)
    std::vector<std::exception_ptr> failures;
    std::vector<report_end> ends;
    if (!runs.empty()) {
        auto reports = asio::experimental::make_parallel_group(std::move(runs));
        std::tie(std::ignore, failures, ends) =
            co_await reports.async_wait(a_refusal_cancels_the_rest, asio::use_awaitable);
    }

    // A refusal refuses the whole request: the group has cancelled its other
    // reports. Otherwise a report cut short, or never run, means that the
    // request itself was cancelled.
    for (const auto& failure : failures) {
        const auto why = not_run(failure);
        if (why == tame::errc::pool_overloaded) {
            co_return overloaded(options_.retry_after);
        }
        if (why == tame::errc::closed) {
            throw http::http_error{http::status::service_unavailable,
                                   "the service is shutting down"};
        }
    }
    boost::json::array failed;
    std::size_t generated = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (not_run(failures[i]) || (!failures[i] && ends[i] == report_end::cut_short)) {
            throw boost::system::system_error{asio::error::operation_aborted};
        }
        if (failures[i]) {
            failed.push_back({{"id", ids[i]}, {"error", report_failure(failures[i])}});
        } else {
            ++generated;
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
