#pragma once

#include <tame/cancel_source.hpp>
#include <tame/permit.hpp>
#include <tame/redis/connection.hpp>
#include <tame/redis/distributed_semaphore.hpp>
#include <tame/semaphore.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>

namespace samples {

/// The service-wide cap on sync tasks running at once (--max-running-tasks):
/// an async_semaphore of this process, or, with --redis, a
/// tame::distributed_semaphore that every replica sharing the Redis draws on.
class task_slots {
  public:
    /// A slot held by a task until it is destroyed.
    class slot {
      public:
        slot() = default;
        slot(slot&& other) noexcept;
        slot& operator=(slot&& other) noexcept;
        ~slot();

        /// Whether it is a slot of the shared (Redis) semaphore.
        bool is_shared() const noexcept { return static_cast<bool>(shared_); }

        /// Emitted when a shared slot's lease is lost (work bound to it
        /// stops); never for a slot of this process.
        const tame::cancel_source& lost() const noexcept { return shared_.lost(); }

      private:
        friend class task_slots;
        tame::permit local_;
        tame::distributed_permit shared_;
        std::atomic<std::size_t>* held_ = nullptr;
    };

    /// Slots of this process only.
    task_slots(const boost::asio::any_io_executor& ex, std::size_t capacity);
    /// Slots shared through `redis`, named `name`; the capacity is set in
    /// Redis by the first replica to use the name.
    task_slots(tame::redis::connection& redis, const std::string& name, std::size_t capacity,
               std::chrono::milliseconds lease);

    /// Waits for a slot; throws boost::system::system_error: errc::closed once
    /// close() has been called, errc::redis_unavailable when a shared slot
    /// could not be had from Redis in time.
    boost::asio::awaitable<slot> acquire();

    /// Refuses later acquires (and, locally, the waiting ones).
    void close();

    /// Slots held by this process now.
    std::size_t held() const noexcept { return held_.load(std::memory_order_relaxed); }

    /// The local semaphore (for its metrics), or null when shared.
    tame::async_semaphore* local() noexcept { return local_ ? &*local_ : nullptr; }

    /// The shared semaphore, or null.
    tame::distributed_semaphore* shared() noexcept { return shared_.get(); }

  private:
    std::optional<tame::async_semaphore> local_;
    std::unique_ptr<tame::distributed_semaphore> shared_;
    std::atomic<bool> closed_{false};
    std::atomic<std::size_t> held_{0};
};

} // namespace samples
