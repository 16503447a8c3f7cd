#pragma once

#include <atomic>
#include <cstddef>

namespace samples {

/// Counts the tasks running now and the most that ever ran at once: the
/// `peak_concurrency` the sync service reports is measured here, not assumed.
class concurrency_meter {
  public:
    void enter() noexcept
    {
        const std::size_t now = running_.fetch_add(1, std::memory_order_relaxed) + 1;
        std::size_t seen = peak_.load(std::memory_order_relaxed);
        while (now > seen && !peak_.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
        }
    }

    void leave() noexcept { running_.fetch_sub(1, std::memory_order_relaxed); }

    std::size_t running() const noexcept { return running_.load(std::memory_order_relaxed); }
    std::size_t peak() const noexcept { return peak_.load(std::memory_order_relaxed); }

    /// Holds one place in the meter for its lifetime.
    class scope {
      public:
        explicit scope(concurrency_meter& meter) noexcept : meter_{meter} { meter_.enter(); }
        ~scope() { meter_.leave(); }
        scope(const scope&) = delete;
        scope& operator=(const scope&) = delete;

      private:
        concurrency_meter& meter_;
    };

  private:
    std::atomic<std::size_t> running_{0};
    std::atomic<std::size_t> peak_{0};
};

} // namespace samples
