#pragma once

#include <tame/detail/semaphore_state.hpp>
#include <tame/limit_algorithm.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

namespace tame {

class adaptive_permit;
class permit;
struct adaptive_limit_stats;

namespace detail {

/// What an adaptive_limit shares with its permits and its waiting acquires: the
/// algorithm, and the semaphore whose capacity it sets. It lives until the
/// limit, its permits and its waiting acquires are all gone, counted in one
/// word: the permits held (the low 32 bits, which are also the limit's
/// in-flight count), the acquires waiting (the next 30) and the owner (one bit).
class adaptive_limit_state {
  public:
    using clock_function = std::function<std::chrono::steady_clock::time_point()>;

    /// The caller holds the owner's reference.
    adaptive_limit_state(std::unique_ptr<limit_algorithm> algorithm, semaphore_ref semaphore,
                         clock_function clock);
    adaptive_limit_state(const adaptive_limit_state&) = delete;
    adaptive_limit_state& operator=(const adaptive_limit_state&) = delete;

    /// A permit taken from the semaphore, timed from now.
    adaptive_permit adopt(permit granted) noexcept;
    /// A waiting acquire's permit (empty on failure), which gives back the
    /// waiter's reference.
    adaptive_permit adopt_waited(permit granted) noexcept;

    /// An acquire starts to wait, holding the state.
    void add_waiter() noexcept { refs_.fetch_add(waiter_one, std::memory_order_relaxed); }
    /// A waiting acquire's handler was destroyed uncalled.
    void drop_waiter() noexcept { drop(waiter_one); }
    /// The adaptive_limit is destroyed.
    void drop_owner() noexcept { drop(owner_one); }

    enum class outcome { success, dropped, ignored };
    /// Ends a permit: feeds the algorithm (unless ignored) and moves the
    /// semaphore's capacity with it, then gives the semaphore permit back.
    void finish(permit& held, std::chrono::steady_clock::time_point start, std::size_t in_flight,
                outcome how) noexcept;

    std::size_t limit() const noexcept { return limit_.load(std::memory_order_relaxed); }
    std::size_t in_flight() const noexcept
    {
        return static_cast<std::size_t>(refs_.load(std::memory_order_relaxed) & permit_mask);
    }
    adaptive_limit_stats stats() const noexcept;

  private:
    static constexpr std::uint64_t permit_mask = 0xffffffff;
    static constexpr std::uint64_t waiter_one = std::uint64_t{1} << 32;
    static constexpr std::uint64_t owner_one = std::uint64_t{1} << 62;

    std::chrono::steady_clock::time_point now() const;
    void drop(std::uint64_t refs) noexcept;

    std::atomic<std::uint64_t> refs_{owner_one};
    clock_function clock_;
    semaphore_ref semaphore_;
    std::atomic<std::size_t> limit_;
    std::atomic<std::uint64_t> succeeded_{0};
    std::atomic<std::uint64_t> dropped_{0};
    std::atomic<std::uint64_t> ignored_{0};

    std::mutex mutex_; // guards algorithm_, and orders the capacity changes
    std::unique_ptr<limit_algorithm> algorithm_;
};

} // namespace detail
} // namespace tame
