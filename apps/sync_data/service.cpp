#include "sync_data/service.hpp"

#include "common/app_options.hpp"
#include "common/elapsed.hpp"
#include "sync_data/query_args.hpp"

#include <tame/http/json.hpp>
#include <tame/http/metrics.hpp>
#include <tame/http/request_context.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/program_options/value_semantic.hpp>
#include <boost/system/system_error.hpp>

#include <stdexcept>
#include <string>

namespace asio = boost::asio;
namespace po = boost::program_options;

namespace samples {
namespace {

using clock = std::chrono::steady_clock;

const char* reason_text(http::cancel_reason why)
{
    switch (why) {
    case http::cancel_reason::client_gone:
        return "the client went away";
    case http::cancel_reason::deadline:
        return "the request deadline passed";
    case http::cancel_reason::shutdown:
        return "the server is shutting down";
    case http::cancel_reason::none:
        break;
    }
    return "cancelled";
}

} // namespace

void add_sync_data_options(po::options_description& description, sync_data_options& options)
{
    constexpr auto most = tame::async_semaphore::max_capacity;
    po::options_description sync{"tame-sync-data (POST /sync-data, GET|DELETE /jobs/{id})"};
    sync.add_options()("tasks", count_flag(options.tasks, "tasks", 1, most),
                       "jobs in a batch (query: tasks)")(
        "concurrency", count_flag(options.concurrency, "concurrency", 1, most),
        "jobs of a batch running at once, at most (query: concurrency)")(
        "task-ms", milliseconds_flag(options.task_time, "task-ms"),
        "duration of one job, ms (query: task_ms)")(
        "max-tasks", count_flag(options.max_tasks, "max-tasks", 1, most),
        "the most tasks a query may ask for")(
        "max-concurrency", count_flag(options.max_concurrency, "max-concurrency", 1, most),
        "the most concurrency a query may ask for")(
        "max-task-ms", milliseconds_flag(options.max_task_time, "max-task-ms"),
        "the longest task_ms a query may ask for")(
        "max-running-tasks", count_flag(options.max_running_tasks, "max-running-tasks", 1, most),
        "sync jobs running at once over all batches (a service-wide semaphore)")(
        "max-jobs", count_flag(options.max_jobs, "max-jobs", 1, most),
        "async batches kept, running or finished")(
        "job-ttl-s", seconds_flag(options.job_ttl, "job-ttl-s", 7L * 24 * 3600),
        "how long a finished async batch stays visible at /jobs/{id}, s");
    description.add(sync);
}

sync_data_service::sync_data_service(const asio::any_io_executor& ex, sync_data_options options)
    : sample_service{ex}, options_{options}, task_slots_{ex, options.max_running_tasks},
      jobs_{options.max_jobs, options.job_ttl, jobs_cancel_}, jobs_running_{ex}
{
    if (options_.tasks > options_.max_tasks || options_.concurrency > options_.max_concurrency ||
        options_.task_time > options_.max_task_time) {
        throw std::invalid_argument{
            "tame-sync-data: the default batch (--tasks, --concurrency, --task-ms) "
            "must lie within --max-tasks, --max-concurrency and --max-task-ms"};
    }
}

sync_data_service::~sync_data_service()
{
    jobs_cancel_.emit();
    task_slots_.close();
}

void sync_data_service::add_routes(http::router& routes)
{
    routes.post("/sync-data", [this](http::request_context& ctx) { return sync_data(ctx); });
    routes.get("/jobs/{id}", [this](http::request_context& ctx) { return job_status(ctx); });
    routes.del("/jobs/{id}", [this](http::request_context& ctx) { return cancel_job(ctx); });
}

void sync_data_service::add_metrics(http::metrics_registry& metrics)
{
    metrics.add_semaphore("sync_tasks", task_slots_);
    metrics.add(http::metric_type::counter, "tame_sync_tasks_done_total",
                "Sync tasks finished, over all batches.", "", [this] {
                    return static_cast<double>(tasks_done_.load(std::memory_order_relaxed));
                });
    metrics.add(http::metric_type::gauge, "tame_sync_jobs_running",
                "Async sync batches running now.", "",
                [this] { return static_cast<double>(jobs_.running()); });
    metrics.add(http::metric_type::gauge, "tame_sync_jobs_kept",
                "Async sync batches kept, running or finished.", "",
                [this] { return static_cast<double>(jobs_.size()); });
}

void sync_data_service::do_async_stop(asio::any_completion_handler<void(error_code)> done)
{
    // Running jobs end with their tasks cancelled; a batch asked for later is
    // refused (its tasks' acquires fail with tame::errc::closed).
    jobs_cancel_.emit();
    task_slots_.close();
    jobs_running_.async_wait(
        [done = std::move(done)](error_code ec) mutable { std::move(done)(ec); });
}

std::size_t sync_data_service::running_tasks() const noexcept
{
    return task_slots_.capacity() - task_slots_.available();
}

sync_batch_spec sync_data_service::batch_from(const http::request_context& ctx) const
{
    sync_batch_spec spec;
    spec.tasks = query_number(ctx, "tasks", options_.tasks, 1, options_.max_tasks);
    spec.concurrency =
        query_number(ctx, "concurrency", options_.concurrency, 1, options_.max_concurrency);
    spec.task_time = std::chrono::milliseconds{query_number(
        ctx, "task_ms", options_.task_time.count(), 0, options_.max_task_time.count())};
    return spec;
}

asio::awaitable<http::response> sync_data_service::sync_data(http::request_context& ctx)
{
    const auto spec = batch_from(ctx);
    if (query_switch(ctx, "async")) {
        co_return start_job(spec);
    }

    const auto started = clock::now();
    auto progress = std::make_shared<sync_progress>();
    try {
        auto batch = run_sync_batch(get_executor(), spec, progress, task_slots_);
        co_await std::move(batch);
    } catch (const boost::system::system_error&) {
        tasks_done_.fetch_add(progress->done.load(), std::memory_order_relaxed);
        if (!ctx.is_cancelled()) {
            throw;
        }
        // The client will not read this when it has gone; a shutdown's client will.
        const auto done = progress->done.load();
        co_return http::json_response(
            http::status::service_unavailable,
            {{"error", std::string{"sync cancelled: "} + reason_text(ctx.cancel_reason())},
             {"done", done},
             {"tasks", spec.tasks}});
    }
    tasks_done_.fetch_add(spec.tasks, std::memory_order_relaxed);
    co_return http::json_response({
        {"message", "synchronised " + std::to_string(spec.tasks) + " records"},
        {"tasks", spec.tasks},
        {"concurrency", spec.concurrency},
        {"peak_concurrency", progress->meter.peak()},
        {"elapsed_ms", elapsed_ms(started)},
    });
}

http::response sync_data_service::start_job(const sync_batch_spec& spec)
{
    auto job = jobs_.create(spec);
    if (!job) {
        auto res = http::error_response(http::status::service_unavailable,
                                        std::to_string(options_.max_jobs) +
                                            " sync jobs are running already");
        res.set(http::field::retry_after, "10");
        return res;
    }
    // The job runs on a strand of its own, so that its cancel_source (a child of
    // the service's) can cancel it from any thread. The service owns it: async_stop()
    // cancels it, and the io_context runs until it has ended.
    auto strand = asio::make_strand(get_executor());
    jobs_running_.add();
    asio::co_spawn(
        strand, run_sync_batch(get_executor(), spec, job->progress, task_slots_),
        job->cancel.bind(asio::bind_executor(strand, [this, job](std::exception_ptr failure) {
            tasks_done_.fetch_add(job->progress->done.load(), std::memory_order_relaxed);
            jobs_.finish(*job, failure);
            jobs_running_.done(); // last: async_stop() may let the service go
        })));
    auto res = http::json_response(http::status::accepted, {
                                                               {"id", job->id},
                                                               {"state", "running"},
                                                               {"tasks", spec.tasks},
                                                               {"concurrency", spec.concurrency},
                                                               {"status", "/jobs/" + job->id},
                                                           });
    res.set(http::field::location, "/jobs/" + job->id);
    return res;
}

asio::awaitable<http::response> sync_data_service::job_status(http::request_context& ctx)
{
    auto job = jobs_.find(ctx.path_param("id"));
    if (!job) {
        throw http::http_error{http::status::not_found,
                               "no sync job " + ctx.path_param("id") + " (or it expired)"};
    }
    co_return http::json_response(job->describe());
}

asio::awaitable<http::response> sync_data_service::cancel_job(http::request_context& ctx)
{
    auto job = jobs_.find(ctx.path_param("id"));
    if (!job) {
        throw http::http_error{http::status::not_found,
                               "no sync job " + ctx.path_param("id") + " (or it expired)"};
    }
    if (job->current() != sync_job::state::running) {
        throw http::http_error{http::status::conflict,
                               "sync job " + job->id + " has ended already"};
    }
    // Cancelling is asynchronous: the job reports `cancelled` once its tasks
    // have ended, which GET /jobs/{id} shows.
    job->cancel.emit();
    co_return http::json_response(http::status::accepted, job->describe());
}

} // namespace samples
