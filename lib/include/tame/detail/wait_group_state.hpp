#pragma once

#include <tame/detail/intrusive_list.hpp>
#include <tame/error.hpp>

#include <cstddef>
#include <memory>
#include <mutex>

namespace tame::detail {

class wait_group_state;

/// A queued async_wait, type-erased; queued_handler supplies complete().
class wait_group_waiter : public intrusive_list_node {
public:
    explicit wait_group_waiter(std::shared_ptr<wait_group_state> owner) noexcept
        : owner{std::move(owner)}
    {
    }

    /// Delivers the outcome to the handler's executor; called once, never under the lock.
    virtual void complete(error_code ec) = 0;

    /// Keeps the mutex alive for the canceller until the handler has run.
    const std::shared_ptr<wait_group_state> owner;

    bool queued = false; // guarded by the owner's mutex

protected:
    ~wait_group_waiter() = default;
};

/// The shared state of a wait_group: a counter and the waiters for its zero.
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

    /// Removes a queued waiter and completes it with `reason`.
    void cancel(wait_group_waiter& waiter, error_code reason) noexcept;

    /// Completes every queued waiter with `reason`.
    void abort(error_code reason) noexcept;

private:
    static void finish(intrusive_list<wait_group_waiter>& ready, error_code ec) noexcept;

    mutable std::mutex mutex_;
    std::size_t count_ = 0;
    intrusive_list<wait_group_waiter> queue_;
};

} // namespace tame::detail
