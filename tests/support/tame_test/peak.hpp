#pragma once

#include <atomic>
#include <cstddef>

namespace tame_test {

/// A running count and the highest value it ever reached: how many tasks are
/// inside a section now, and the most that were at once. Every member may be
/// called from any thread.
class peak_counter {
  public:
    /// Adds `n` to the count, and raises the peak to the new count.
    void enter(std::size_t n = 1) noexcept
    {
        // Each count is seen by the thread that made it, so the peak misses none.
        const std::size_t now = current_.fetch_add(n) + n;
        std::size_t seen = peak_.load();
        while (now > seen && !peak_.compare_exchange_weak(seen, now)) {
        }
    }

    /// Takes `n` off the count.
    void leave(std::size_t n = 1) noexcept { current_.fetch_sub(n); }

    /// The count now.
    std::size_t current() const noexcept { return current_.load(); }

    /// The highest count so far.
    std::size_t peak() const noexcept { return peak_.load(); }

    /// Holds `n` of the count for its lifetime: enter() now, leave() however the
    /// scope ends (a return, an exception, a coroutine destroyed mid-way).
    class scope {
      public:
        explicit scope(peak_counter& counter, std::size_t n = 1) noexcept : counter_{counter}, n_{n}
        {
            counter_.enter(n_);
        }
        ~scope() { counter_.leave(n_); }

        scope(const scope&) = delete;
        scope& operator=(const scope&) = delete;

      private:
        peak_counter& counter_;
        std::size_t n_;
    };

  private:
    std::atomic<std::size_t> current_{0};
    std::atomic<std::size_t> peak_{0};
};

} // namespace tame_test
