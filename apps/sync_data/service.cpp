#include "sync_data/service.hpp"

#include "common/app_options.hpp"
#include "common/elapsed.hpp"
#include "sync_data/query_args.hpp"

#include <tame/cancel_source.hpp>
#include <tame/http/json.hpp>
#include <tame/http/metrics.hpp>
#include <tame/http/request_context.hpp>
#include <tame/on_failure.hpp>

#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/program_options/value_semantic.hpp>
#include <boost/system/system_error.hpp>

#include <exception>
#include <memory>
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
    : sample_service{ex}, options_{options}, jobs_{options.max_jobs, options.job_ttl},
      job_group_{ex, 0, tame::on_failure::keep_going}
{
    if (options_.tasks > options_.max_tasks || options_.concurrency > options_.max_concurrency ||
        options_.task_time > options_.max_task_time) {
        throw std::invalid_argument{
            "tame-sync-data: the default batch (--tasks, --concurrency, --task-ms) "
            "must lie within --max-tasks, --max-concurrency and --max-task-ms"};
    }
    if (!options_.redis) {
        task_slots_ = std::make_unique<task_slots>(ex, options_.max_running_tasks);
        return;
    }
    tame::redis::connection_options redis_options;
    redis_options.url = *options_.redis;
    redis_ = std::make_unique<tame::redis::connection>(ex, redis_options);
    task_slots_ = std::make_unique<task_slots>(*redis_, "sync_tasks", options_.max_running_tasks,
                                               options_.lease);
    shared_jobs_ =
        std::make_unique<shared_jobs>(*redis_, options_.instance, options_.lease, options_.job_ttl);
    // The runner's loop is the group's first task: the stop cancels and joins
    // it with the jobs.
    job_group_.try_spawn([this] { return shared_jobs_->run(); });
}

sync_data_service::~sync_data_service()
{
    job_group_.cancel();
    task_slots_->close();
    if (redis_) {
        redis_->close();
    }
}

void sync_data_service::add_routes(http::router& routes)
{
    routes.post("/sync-data", [this](http::request_context& ctx) { return sync_data(ctx); });
    routes.get("/jobs/{id}", [this](http::request_context& ctx) { return job_status(ctx); });
    routes.del("/jobs/{id}", [this](http::request_context& ctx) { return cancel_job(ctx); });
}

void sync_data_service::add_metrics(http::metrics_registry& metrics)
{
    if (auto* local = task_slots_->local()) {
        metrics.add_semaphore("sync_tasks", *local);
    } else {
        metrics.add(http::metric_type::gauge, "tame_sync_tasks_shared_held",
                    "Sync tasks of this replica holding a slot of the cap shared through Redis.",
                    "", [this] { return static_cast<double>(task_slots_->held()); });
    }
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
    // Running jobs end with their tasks cancelled, and the group takes no new
    // job; a batch asked for later is refused (its tasks' acquires fail with
    // tame::errc::closed).
    job_group_.cancel();
    task_slots_->close();
    // The join's first failure is a job's, which its /jobs/{id} already
    // reports: the stop itself has succeeded once every job has ended.
    job_group_.async_join([this, done = std::move(done)](std::exception_ptr) mutable {
        auto* shared = task_slots_->shared();
        if (shared == nullptr) {
            std::move(done)(error_code{});
            return;
        }
        // The slots the tasks gave back are on their way to Redis; a script
        // sent after them through the semaphore arrives after them. Then the
        // connection closes, which lets the io_context's run() return.
        shared->async_stats(
            [this, done = std::move(done)](error_code, tame::distributed_semaphore_stats) mutable {
                redis_->close();
                std::move(done)(error_code{});
            });
    });
}

std::size_t sync_data_service::running_tasks() const noexcept
{
    return task_slots_->held();
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
        co_return co_await start_job(spec);
    }

    const auto started = clock::now();
    auto progress = std::make_shared<sync_progress>();
    try {
        auto batch = run_sync_batch(get_executor(), spec, progress, *task_slots_);
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

asio::awaitable<http::response> sync_data_service::start_job(const sync_batch_spec& spec)
{
    auto job = jobs_.create(spec);
    if (!job) {
        auto res = http::error_response(http::status::service_unavailable,
                                        std::to_string(options_.max_jobs) +
                                            " sync jobs are running already");
        res.set(http::field::retry_after, "10");
        co_return res;
    }
    // The job belongs to the service, not to this request: a task of its
    // supervisor group, which async_stop() cancels and joins. A group that has
    // been cancelled takes no new task: the service is stopping.
    auto job_task = [this, job] { return run_job(job); };
    if (!job_group_.try_spawn(std::move(job_task))) {
        jobs_.discard(*job);
        co_return http::error_response(http::status::service_unavailable,
                                       "the service is stopping: it takes no new sync job");
    }
    if (shared_jobs_) {
        // Recorded before the 202, so that any replica finds it at once. If
        // Redis fails now, the runner's loop records it on a later tick.
        try {
            co_await shared_jobs_->add(job);
        } catch (const boost::system::system_error&) {
        }
    }
    auto res = http::json_response(http::status::accepted, {
                                                               {"id", job->id},
                                                               {"state", "running"},
                                                               {"tasks", spec.tasks},
                                                               {"concurrency", spec.concurrency},
                                                               {"status", "/jobs/" + job->id},
                                                           });
    res.set(http::field::location, "/jobs/" + job->id);
    co_return res;
}

asio::awaitable<void> sync_data_service::run_job(std::shared_ptr<sync_job> job)
{
    std::exception_ptr failure;
    try {
        // Until the batch ends, or DELETE /jobs/{id} emits the job's own
        // source; the group's cancel() (the service's stop) reaches it as well.
        auto batch = run_sync_batch(get_executor(), job->spec, job->progress, *task_slots_);
        co_await tame::with_cancellation(std::move(batch), job->cancel);
    } catch (...) {
        failure = std::current_exception();
    }
    tasks_done_.fetch_add(job->progress->done.load(), std::memory_order_relaxed);
    const auto ended = jobs_.finish(*job, failure);
    if (shared_jobs_) {
        // The final record, even when the job was cancelled by the stop: a
        // fresh cancellation state, or the write would be cancelled too.
        co_await asio::this_coro::reset_cancellation_state();
        try {
            co_await shared_jobs_->finished(*job);
        } catch (const boost::system::system_error&) {
            // Its record shows `lost` once this replica's runner key expires.
        }
    }
    if (ended == sync_job::state::failed) {
        // The supervisor keeps it for its join, and cancels no other job.
        std::rethrow_exception(failure);
    }
}

asio::awaitable<std::optional<boost::json::object>>
sync_data_service::shared_record(const std::string& id)
{
    try {
        co_return co_await shared_jobs_->find(id);
    } catch (const boost::system::system_error& e) {
        if (e.code() != tame::errc::redis_unavailable) {
            throw;
        }
    }
    throw http::http_error{http::status::service_unavailable,
                           "the shared job store (Redis) is unavailable"};
}

asio::awaitable<http::response> sync_data_service::job_status(http::request_context& ctx)
{
    auto job = jobs_.find(ctx.path_param("id"));
    if (!job && shared_jobs_) {
        if (auto record = co_await shared_record(ctx.path_param("id"))) {
            co_return http::json_response(std::move(*record));
        }
    }
    if (!job) {
        throw http::http_error{http::status::not_found,
                               "no sync job " + ctx.path_param("id") + " (or it expired)"};
    }
    co_return http::json_response(job->describe());
}

asio::awaitable<http::response> sync_data_service::cancel_job(http::request_context& ctx)
{
    auto job = jobs_.find(ctx.path_param("id"));
    if (!job && shared_jobs_) {
        // Another replica's job: its runner cancels it on its next tick.
        if (auto record = co_await shared_record(ctx.path_param("id"))) {
            const std::string state{record->at("state").as_string()};
            if (state != "running") {
                throw http::http_error{http::status::conflict,
                                       "sync job " + ctx.path_param("id") + " is " + state};
            }
            co_await shared_jobs_->request_cancel(ctx.path_param("id"));
            co_return http::json_response(http::status::accepted, std::move(*record));
        }
    }
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
