#pragma once

#include "sync_data/sync_jobs.hpp"

#include <tame/redis/connection.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace samples {

/// With --redis: the async jobs as every replica sees them.
///
/// The replica that runs a job (its runner) keeps the job's record in Redis,
/// under `tame:job:{id}`: its description, rewritten every tick (250 ms, or
/// lease/3 if shorter), and once more when it ends (then kept for the job
/// TTL). The runner also keeps `tame:runner:{instance}` alive, renewed every
/// tick and expiring one lease after its last renewal. Any replica reads the
/// record; a running job whose runner key has expired is reported `lost`.
///
/// A DELETE on another replica sets the record's `cancel` field; the runner
/// reads it on its next tick and cancels the job. (A field read on every tick,
/// not a pub/sub message, because messages can be lost; a tick is short.)
class shared_jobs {
  public:
    shared_jobs(tame::redis::connection& redis, std::string instance,
                std::chrono::milliseconds lease, std::chrono::seconds ttl);

    /// The runner's loop: renews the runner key, writes the records of the
    /// running jobs, and cancels those asked to. Runs until cancelled (the
    /// service runs it in its job group, whose stop cancels and joins it).
    boost::asio::awaitable<void> run();

    /// Records `job`, which this replica runs, and keeps its record current.
    boost::asio::awaitable<void> add(std::shared_ptr<sync_job> job);

    /// Writes the final record of `job`, kept for the job TTL.
    boost::asio::awaitable<void> finished(const sync_job& job);

    /// The record of job `id` (any replica's), `lost` when its runner is gone;
    /// none when unknown or expired. Throws system_error when Redis fails.
    boost::asio::awaitable<std::optional<boost::json::object>> find(const std::string& id);

    /// Asks the runner of job `id` to cancel it.
    boost::asio::awaitable<void> request_cancel(const std::string& id);

    /// How often the loop runs.
    std::chrono::milliseconds tick() const noexcept { return tick_; }

  private:
    /// Writes the record of `job`; true if it says the job has ended.
    boost::asio::awaitable<bool> write(const sync_job& job);
    void forget(const std::string& id);

    tame::redis::connection& redis_;
    const std::string instance_;
    const std::chrono::milliseconds lease_;
    const std::chrono::seconds ttl_;
    const std::chrono::milliseconds tick_;
    std::mutex mutex_;
    std::map<std::string, std::shared_ptr<sync_job>> running_;
};

} // namespace samples
