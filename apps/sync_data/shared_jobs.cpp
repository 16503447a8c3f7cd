#include "sync_data/shared_jobs.hpp"

#include <tame/error.hpp>
#include <tame/redis/script.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <vector>

namespace asio = boost::asio;

namespace samples {
namespace {

std::string job_key(const std::string& id)
{
    return "tame:job:{" + id + "}";
}

std::string runner_key(const std::string& instance)
{
    return "tame:runner:{" + instance + "}";
}

std::string ms(std::chrono::milliseconds d)
{
    return std::to_string(d.count());
}

} // namespace

shared_jobs::shared_jobs(tame::redis::connection& redis, std::string instance,
                         std::chrono::milliseconds lease, std::chrono::seconds ttl)
    : redis_{redis}, instance_{std::move(instance)}, lease_{lease}, ttl_{ttl},
      tick_{std::min(std::chrono::milliseconds{250}, lease / 3)}
{
}

asio::awaitable<bool> shared_jobs::write(const sync_job& job)
{
    // The loop and the job's end may write at once (on two threads): a record
    // that says the job ended is never overwritten by an older one that says
    // it runs.
    static const tame::redis::script write_record{R"lua(
local current = redis.call('HGET', KEYS[1], 'state')
if current and current ~= 'running' and ARGV[2] == 'running' then
    return 0
end
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'state', ARGV[2], 'runner', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
)lua"};
    const auto state = job.current();
    // A running job's record outlives a dead runner by the TTL, so that its
    // `lost` state stays visible that long; an ended one is kept the TTL.
    auto keep = std::chrono::duration_cast<std::chrono::milliseconds>(ttl_);
    if (state == sync_job::state::running) {
        keep += lease_;
    }
    // Commands are named before the co_await: g++ 12 miscompiles a braced
    // list inside one ("array used as initializer").
    tame::redis::command keys{job_key(job.id)};
    tame::redis::command args{boost::json::serialize(job.describe()), to_string(state), instance_,
                              ms(keep)};
    co_await redis_.async_eval(write_record, std::move(keys), std::move(args), asio::use_awaitable);
    co_return state != sync_job::state::running;
}

void shared_jobs::forget(const std::string& id)
{
    const std::lock_guard lock{mutex_};
    running_.erase(id);
}

asio::awaitable<void> shared_jobs::run()
{
    asio::steady_timer timer{co_await asio::this_coro::executor};
    for (;;) {
        try {
            tame::redis::command alive{"SET", runner_key(instance_), "1", "PX", ms(lease_)};
            co_await redis_.async_exec(std::move(alive), asio::use_awaitable);
            std::vector<std::shared_ptr<sync_job>> jobs;
            {
                const std::lock_guard lock{mutex_};
                for (const auto& [id, job] : running_) {
                    jobs.push_back(job);
                }
            }
            auto renewed = std::chrono::steady_clock::now();
            for (const auto& job : jobs) {
                if (co_await write(*job)) {
                    forget(job->id); // its end is recorded (its own write had failed)
                    continue;
                }
                if (std::chrono::steady_clock::now() - renewed > lease_ / 3) {
                    // A long pass must not let this replica's key lapse.
                    tame::redis::command again{"SET", runner_key(instance_), "1", "PX", ms(lease_)};
                    co_await redis_.async_exec(std::move(again), asio::use_awaitable);
                    renewed = std::chrono::steady_clock::now();
                }
                tame::redis::command ask{"HGET", job_key(job->id), "cancel"};
                auto asked = co_await redis_.async_exec(std::move(ask), asio::use_awaitable);
                if (asked.text() == "1") {
                    job->cancel.emit();
                }
            }
        } catch (const boost::system::system_error& e) {
            if (e.code() == asio::error::operation_aborted || e.code() == tame::errc::closed) {
                throw;
            }
            // Redis unreachable: the next tick tries again. Meanwhile the
            // runner key may expire, and the other replicas see `lost`.
        }
        timer.expires_after(tick_);
        co_await timer.async_wait(asio::use_awaitable);
    }
}

asio::awaitable<void> shared_jobs::add(std::shared_ptr<sync_job> job)
{
    {
        const std::lock_guard lock{mutex_};
        running_.emplace(job->id, job);
    }
    co_await write(*job);
}

asio::awaitable<void> shared_jobs::finished(const sync_job& job)
{
    // Forgotten once its end is recorded; if this write fails, the loop
    // records it on a later tick.
    co_await write(job);
    forget(job.id);
}

asio::awaitable<std::optional<boost::json::object>> shared_jobs::find(const std::string& id)
{
    tame::redis::command read{"HMGET", job_key(id), "json", "state", "runner"};
    auto record = co_await redis_.async_exec(std::move(read), asio::use_awaitable);
    const auto& fields = record.elements();
    if (fields.size() != 3 || fields[0].is_nil()) {
        co_return std::nullopt;
    }
    boost::system::error_code ec;
    auto parsed = boost::json::parse(fields[0].text(), ec);
    if (ec || !parsed.is_object()) {
        co_return std::nullopt;
    }
    auto job = std::move(parsed.as_object());
    if (fields[1].text() == "running") {
        tame::redis::command exists{"EXISTS", runner_key(fields[2].text())};
        auto alive = co_await redis_.async_exec(std::move(exists), asio::use_awaitable);
        if (alive.integer() == 0) {
            job["state"] = "lost";
            job["error"] = "its runner, " + fields[2].text() + ", stopped renewing its lease";
        }
    }
    job["runner"] = fields[2].text();
    co_return job;
}

asio::awaitable<void> shared_jobs::request_cancel(const std::string& id)
{
    // Only on a record that still exists: one that expired meanwhile must not
    // come back as a key without a TTL.
    static const tame::redis::script ask_to_cancel{R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], 'cancel', '1')
end
return 1
)lua"};
    tame::redis::command keys{job_key(id)};
    tame::redis::command no_args;
    co_await redis_.async_eval(ask_to_cancel, std::move(keys), std::move(no_args),
                               asio::use_awaitable);
}

} // namespace samples
