#include "sync_data/sync_jobs.hpp"

#include "common/elapsed.hpp"

#include <tame/error.hpp>

#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>

namespace samples {
const char* to_string(sync_job::state s) noexcept
{
    switch (s) {
    case sync_job::state::running:
        return "running";
    case sync_job::state::done:
        return "done";
    case sync_job::state::cancelled:
        return "cancelled";
    case sync_job::state::failed:
        return "failed";
    }
    return "unknown";
}

sync_job::state sync_job::current() const
{
    const std::lock_guard lock{mutex_};
    return state_;
}

boost::json::object sync_job::describe() const
{
    const std::lock_guard lock{mutex_};
    boost::json::object out;
    out["id"] = id;
    out["state"] = to_string(state_);
    out["done"] = progress->done.load(std::memory_order_relaxed);
    out["total"] = spec.tasks;
    out["concurrency"] = spec.concurrency;
    out["peak_concurrency"] = progress->meter.peak();
    out["elapsed_ms"] = elapsed_ms(started, state_ == state::running ? clock::now() : finished_);
    if (!error_.empty()) {
        out["error"] = error_;
    }
    return out;
}

sync_job_registry::sync_job_registry(std::size_t max_jobs, std::chrono::seconds ttl)
    : max_jobs_{max_jobs}, ttl_{ttl}
{
}

std::shared_ptr<sync_job> sync_job_registry::create(const sync_batch_spec& spec)
{
    const std::lock_guard lock{mutex_};
    forget_expired(sync_job::clock::now());
    if (jobs_.size() >= max_jobs_ && !forget_oldest_finished()) {
        return nullptr;
    }
    auto job = std::make_shared<sync_job>();
    do {
        char id[17];
        std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(ids_()));
        job->id = id;
    } while (jobs_.count(job->id) != 0);
    job->spec = spec;
    jobs_.emplace(job->id, job);
    return job;
}

void sync_job_registry::discard(const sync_job& job)
{
    const std::lock_guard lock{mutex_};
    jobs_.erase(job.id);
}

std::shared_ptr<sync_job> sync_job_registry::find(const std::string& id)
{
    const std::lock_guard lock{mutex_};
    forget_expired(sync_job::clock::now());
    auto it = jobs_.find(id);
    return it == jobs_.end() ? nullptr : it->second;
}

sync_job::state sync_job_registry::finish(sync_job& job, std::exception_ptr failure)
{
    auto end = sync_job::state::done;
    std::string error;
    if (failure) {
        try {
            std::rethrow_exception(failure);
        } catch (const boost::system::system_error& e) {
            // A job stopped by its DELETE, or by the service's async_stop() (whose
            // semaphore close() may reach a waiting task first).
            const bool cancelled =
                e.code() == boost::asio::error::operation_aborted || e.code() == tame::errc::closed;
            end = cancelled ? sync_job::state::cancelled : sync_job::state::failed;
            error = cancelled ? std::string{} : e.what();
        } catch (const std::exception& e) {
            end = sync_job::state::failed;
            error = e.what();
        } catch (...) {
            end = sync_job::state::failed;
            error = "unknown exception";
        }
    }
    const std::lock_guard lock{job.mutex_};
    job.state_ = end;
    job.finished_ = sync_job::clock::now();
    job.error_ = std::move(error);
    return end;
}

std::size_t sync_job_registry::running() const
{
    const std::lock_guard lock{mutex_};
    return static_cast<std::size_t>(
        std::count_if(jobs_.begin(), jobs_.end(), [](const auto& entry) {
            return entry.second->current() == sync_job::state::running;
        }));
}

std::size_t sync_job_registry::size() const
{
    const std::lock_guard lock{mutex_};
    return jobs_.size();
}

void sync_job_registry::forget_expired(sync_job::clock::time_point now)
{
    std::erase_if(jobs_, [&](const auto& entry) {
        const sync_job& job = *entry.second;
        const std::lock_guard lock{job.mutex_};
        return job.state_ != sync_job::state::running && now - job.finished_ >= ttl_;
    });
}

bool sync_job_registry::forget_oldest_finished()
{
    auto oldest = jobs_.end();
    sync_job::clock::time_point oldest_end{};
    for (auto it = jobs_.begin(); it != jobs_.end(); ++it) {
        const sync_job& job = *it->second;
        const std::lock_guard lock{job.mutex_};
        if (job.state_ != sync_job::state::running &&
            (oldest == jobs_.end() || job.finished_ < oldest_end)) {
            oldest = it;
            oldest_end = job.finished_;
        }
    }
    if (oldest == jobs_.end()) {
        return false;
    }
    jobs_.erase(oldest);
    return true;
}

} // namespace samples
