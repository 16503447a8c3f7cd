#pragma once

#include "common/sample_service.hpp"
#include "sync_data/shared_jobs.hpp"
#include "sync_data/sync_jobs.hpp"
#include "sync_data/task_slots.hpp"

#include <tame/redis/connection.hpp>
#include <tame/redis/url.hpp>
#include <tame/task_group.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/program_options/options_description.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

namespace samples {

/// tame-sync-data's settings. The first three are the defaults of a batch,
/// which query parameters override within the `max_` limits.
struct sync_data_options {
    std::size_t tasks = 1000;
    std::size_t concurrency = 10;
    std::chrono::milliseconds task_time{1000};

    std::size_t max_tasks = 100000;
    std::size_t max_concurrency = 1000;
    std::chrono::milliseconds max_task_time{60000};
    /// The service-wide cap on sync tasks running at once, over all batches.
    std::size_t max_running_tasks = 10000;
    /// Async jobs kept (running or finished), and how long a finished one is.
    std::size_t max_jobs = 1000;
    std::chrono::seconds job_ttl{600};

    /// With a Redis (--redis), the replicas that share it share the cap on
    /// running tasks (max_running_tasks is then over all of them) and the
    /// async jobs: GET and DELETE /jobs/{id} work on any replica.
    std::optional<tame::redis::url> redis;
    /// The lease of this replica's slots and of its jobs' runner key.
    std::chrono::milliseconds lease{10000};
    /// This replica's name in Redis.
    std::string instance = "sync-data";
};

/// Adds tame-sync-data's flags, bound to `options`.
void add_sync_data_options(boost::program_options::options_description& description,
                           sync_data_options& options);

/// POST /sync-data, GET and DELETE /jobs/{id}: the bounded-concurrency batch of
/// the source article (DESIGN.md, "Sample services").
///
/// - A synchronous batch runs inside its request's handler; a client that
///   disconnects cancels the tasks not yet done, and a shutdown's drain end
///   answers 503 with how far it got.
/// - `?async=1` answers 202 at once; the batch is then a job of the service:
///   a task of its supervisor group, which async_stop() cancels and joins.
///   DELETE /jobs/{id} cancels one job alone.
/// - With `redis` set, the cap and the jobs are shared with the other
///   replicas (task_slots.hpp, shared_jobs.hpp).
class sync_data_service : public sample_service {
  public:
    sync_data_service(const boost::asio::any_io_executor& ex, sync_data_options options);
    /// Cancels what still runs without waiting: destroy the service after
    /// async_stop() has completed, or once its io_context no longer runs.
    ~sync_data_service() override;

    void add_routes(http::router& routes) override;
    void add_metrics(http::metrics_registry& metrics) override;

    /// The async jobs, for tests.
    const sync_job_registry& jobs() const noexcept { return jobs_; }
    /// Sync tasks running now, over all batches.
    std::size_t running_tasks() const noexcept;

  private:
    /// Cancels the async jobs and refuses new sync tasks; done once the jobs
    /// have ended.
    void do_async_stop(asio::any_completion_handler<void(error_code)> done) override;

    /// One async job, as a task of `job_group_`: its batch until it ends or
    /// its own cancel_source is emitted; records how it ended.
    boost::asio::awaitable<void> run_job(std::shared_ptr<sync_job> job);

    boost::asio::awaitable<http::response> sync_data(http::request_context& ctx);
    boost::asio::awaitable<http::response> job_status(http::request_context& ctx);
    /// Job `id` as Redis has it; 503 when Redis is unavailable.
    boost::asio::awaitable<std::optional<boost::json::object>> shared_record(const std::string& id);
    boost::asio::awaitable<http::response> cancel_job(http::request_context& ctx);
    sync_batch_spec batch_from(const http::request_context& ctx) const;
    boost::asio::awaitable<http::response> start_job(const sync_batch_spec& spec);

    sync_data_options options_;
    /// With --redis: the connection the shared cap and jobs go through.
    std::unique_ptr<tame::redis::connection> redis_;
    std::unique_ptr<task_slots> task_slots_;
    std::unique_ptr<shared_jobs> shared_jobs_;
    sync_job_registry jobs_;
    /// The async jobs, each a task: a supervisor (on_failure::keep_going), so
    /// that a job that fails cancels no other. async_stop() cancels and joins it.
    tame::task_group job_group_;
    std::atomic<std::uint64_t> tasks_done_{0};
};

} // namespace samples
