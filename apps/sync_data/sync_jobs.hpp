#pragma once

#include "sync_data/sync_batch.hpp"

#include <tame/cancel_source.hpp>

#include <boost/json/object.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>

namespace samples {

/// One batch started with `?async=1`, as GET /jobs/{id} reports it.
struct sync_job {
    enum class state { running, done, cancelled, failed };
    using clock = std::chrono::steady_clock;

    std::string id;
    sync_batch_spec spec;
    std::shared_ptr<sync_progress> progress = std::make_shared<sync_progress>();
    /// Cancels this job alone (DELETE /jobs/{id}): its batch runs under
    /// tame::with_cancellation() on it. The service's stop cancels every job
    /// through the task_group that runs them.
    tame::cancel_source cancel;
    clock::time_point started = clock::now();

    /// The progress as JSON: id, state, done, total, concurrency,
    /// peak_concurrency, elapsed_ms (and error, for a failed job).
    boost::json::object describe() const;
    state current() const;

  private:
    friend class sync_job_registry;
    mutable std::mutex mutex_;
    state state_ = state::running;
    clock::time_point finished_{};
    std::string error_;
};

/// "running", "done", "cancelled" or "failed", as GET /jobs/{id} says it.
const char* to_string(sync_job::state s) noexcept;

/// The async jobs a service knows, with bounded memory: a finished job is
/// forgotten `ttl` after it ended, and at most `max_jobs` are kept; when the
/// registry is full, the job that finished first goes to make room, and when
/// every job kept is still running, no new one is taken.
///
/// The registry only remembers jobs: the service runs them (as tasks of its
/// task_group). A job's state is the one record of whether it runs.
///
/// Thread-safe.
class sync_job_registry {
  public:
    sync_job_registry(std::size_t max_jobs, std::chrono::seconds ttl);

    /// A new running job for `spec`, or null when `max_jobs` are running.
    std::shared_ptr<sync_job> create(const sync_batch_spec& spec);

    /// Forgets `job`, made by create() but never started.
    void discard(const sync_job& job);

    /// The job `id`, or null when it is unknown or expired.
    std::shared_ptr<sync_job> find(const std::string& id);

    /// Records the end of `job`: done when `failure` is null, else cancelled or
    /// failed (with the exception's message). Returns that state.
    sync_job::state finish(sync_job& job, std::exception_ptr failure);

    /// Jobs running now: those kept whose state is running.
    std::size_t running() const;

    /// Jobs kept now, running or finished.
    std::size_t size() const;

  private:
    void forget_expired(sync_job::clock::time_point now);
    bool forget_oldest_finished();

    const std::size_t max_jobs_;
    const std::chrono::seconds ttl_;
    mutable std::mutex mutex_;
    std::map<std::string, std::shared_ptr<sync_job>> jobs_;
    std::mt19937_64 ids_{std::random_device{}()};
};

} // namespace samples
