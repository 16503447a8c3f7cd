#pragma once

#include <tame/detail/intrusive_list.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>

namespace tame::detail {

class wait_group_state;

/// How a wait ended; decided under the state's lock.
enum class wait_outcome : unsigned char {
    pending,
    zero,      // the count reached zero
    cancelled, // asio::error::operation_aborted, through the cancellation slot
    aborted,   // asio::error::operation_aborted, the wait_group was destroyed
};

/// A queued async_wait, type-erased; queued_handler supplies complete().
class wait_group_waiter : public intrusive_list_node {
  public:
    explicit wait_group_waiter(std::shared_ptr<wait_group_state> owner) noexcept
        : owner{std::move(owner)}
    {
    }

    /// Schedules the handler on its executor with the outcome; called once, never
    /// under the lock.
    virtual void complete() = 0;

    /// Keeps the mutex alive for the canceller until the handler has run.
    const std::shared_ptr<wait_group_state> owner;

    // Written under the owner's mutex; read by the handler after complete().
    wait_outcome outcome = wait_outcome::pending;
    bool queued = false;

  protected:
    ~wait_group_waiter() = default;
};

/// The shared state of a wait_group: a counter and the waiters for its zero.
///
/// add() is one atomic operation, and so is done() above one (pools count
/// every task through here); the step to zero takes the mutex, which guards
/// the queue, so that a waiter never misses it.
class wait_group_state {
  public:
    wait_group_state() = default;
    wait_group_state(const wait_group_state&) = delete;
    wait_group_state& operator=(const wait_group_state&) = delete;
    ~wait_group_state();

    void add(std::size_t n) noexcept;
    void done() noexcept;
    std::size_t count() const noexcept;

    /// Completes the waiter at once when the count is zero, else queues it.
    void start(wait_group_waiter& waiter);

    /// Removes a queued waiter and completes it as cancelled.
    void cancel(wait_group_waiter& waiter) noexcept;

    /// Completes every queued waiter as aborted.
    void abort() noexcept;

  private:
    void take_all_locked(intrusive_list<wait_group_waiter>& ready, wait_outcome outcome) noexcept;
    static void finish(intrusive_list<wait_group_waiter>& ready) noexcept;

    mutable std::mutex mutex_;
    std::atomic<std::size_t> count_{0};
    intrusive_list<wait_group_waiter> queue_;
};

} // namespace tame::detail
