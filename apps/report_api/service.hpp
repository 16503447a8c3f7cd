#pragma once

#include "common/sample_service.hpp"

#include <tame/task_pool.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/program_options/options_description.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <set>

namespace samples {

/// tame-report-api's settings.
struct report_api_options {
    /// Reports generated at once, over all requests: the one pool's capacity.
    std::size_t pool_capacity = 100;
    /// How long one report takes.
    std::chrono::milliseconds report_time{500};
    /// The most ids one request may ask for.
    std::size_t max_reports = 1000;
    /// ants' Nonblocking mode: a request that finds the pool full is refused
    /// with 503 and Retry-After instead of waiting for slots.
    bool nonblocking = false;
    std::chrono::seconds retry_after{1};
    /// Ids whose report fails (it throws), to show a failure staying contained.
    std::set<std::int64_t> failing_ids;
    /// One thread runs the executor: the pool skips its strands.
    bool single_threaded = false;
};

/// Adds tame-report-api's flags, bound to `options`.
void add_report_api_options(boost::program_options::options_description& description,
                            report_api_options& options);

/// POST /reports/generate: the report generator of the source article. One
/// process-wide task_pool (Go's `ants` pool) runs every report; each request
/// runs its own reports and waits for them (Submit + WaitGroup): one
/// async_run() per report, the pool's join handle, all awaited together in an
/// Asio parallel_group. A report that throws is listed in its request's answer
/// and logged; the pool and the service go on. A request refused by the pool
/// (full, in nonblocking mode, or closed) or cancelled (its client went away,
/// the drain ended) cancels the reports it started and waits for them before
/// it ends.
class report_api_service : public sample_service {
  public:
    report_api_service(const boost::asio::any_io_executor& ex, report_api_options options);

    void add_routes(http::router& routes) override;
    void add_metrics(http::metrics_registry& metrics) override;

    /// The pool, for tests and metrics.
    const tame::task_pool& pool() const noexcept { return pool_; }

  private:
    /// Closes the pool and cancels the reports still running; done once they
    /// have ended.
    void do_async_stop(asio::any_completion_handler<void(error_code)> done) override;

    boost::asio::awaitable<http::response> generate(http::request_context& ctx);
    std::vector<std::int64_t> report_ids(const http::request& req) const;

    report_api_options options_;
    tame::task_pool pool_;
};

} // namespace samples
