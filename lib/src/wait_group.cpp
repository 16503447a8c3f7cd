#include <tame/detail/wait_group_state.hpp>

#include <boost/assert.hpp>

namespace tame::detail {

wait_group_state::~wait_group_state()
{
    // Queued waiters own a reference to this state, so none can be left.
    BOOST_ASSERT(queue_.empty());
}

void wait_group_state::add(std::size_t n) noexcept
{
    // seq_cst, as the check in start(): a pool counts a task here, then takes a
    // slot unless closed; a drain closes, then checks the count.
    count_.fetch_add(n, std::memory_order_seq_cst);
}

void wait_group_state::done() noexcept
{
    // Above one, a decrement cannot reach zero: one compare-and-swap, no lock.
    std::size_t now = count_.load(std::memory_order_relaxed);
    while (now > 1) {
        if (count_.compare_exchange_weak(now, now - 1, std::memory_order_acq_rel)) {
            return;
        }
    }
    // The step to zero is taken under the lock, as waiters check the count
    // under it: none can see zero, complete and destroy the group while this
    // call still uses it, and none can queue after zero and be missed.
    intrusive_list<wait_group_waiter> ready;
    {
        std::lock_guard lock{mutex_};
        const std::size_t before = count_.fetch_sub(1, std::memory_order_acq_rel);
        BOOST_ASSERT_MSG(before > 0, "tame::wait_group::done() called more often than add()");
        if (before == 0) {
            // With assertions off, a stray done() must not leave the count wrapped.
            count_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        if (before == 1) {
            take_all_locked(ready, wait_outcome::zero);
        }
    }
    finish(ready);
}

std::size_t wait_group_state::count() const noexcept
{
    return count_.load(std::memory_order_acquire);
}

void wait_group_state::start(wait_group_waiter& waiter)
{
    {
        std::lock_guard lock{mutex_};
        // Checked under the lock, under which the count reaches zero: a done()
        // that takes it there later finds this waiter queued.
        if (count_.load(std::memory_order_seq_cst) > 0) {
            waiter.queued = true;
            queue_.push_back(waiter);
            return;
        }
        waiter.outcome = wait_outcome::zero;
    }
    waiter.complete();
}

void wait_group_state::cancel(wait_group_waiter& waiter) noexcept
{
    {
        std::lock_guard lock{mutex_};
        if (!waiter.queued) {
            return; // the count reached zero first: that outcome is on its way
        }
        queue_.erase(waiter);
        waiter.queued = false;
        waiter.outcome = wait_outcome::cancelled;
    }
    waiter.complete();
}

void wait_group_state::abort() noexcept
{
    intrusive_list<wait_group_waiter> ready;
    {
        std::lock_guard lock{mutex_};
        take_all_locked(ready, wait_outcome::aborted);
    }
    finish(ready);
}

void wait_group_state::take_all_locked(intrusive_list<wait_group_waiter>& ready,
                                       wait_outcome outcome) noexcept
{
    while (!queue_.empty()) {
        wait_group_waiter& waiter = queue_.pop_front();
        waiter.queued = false;
        waiter.outcome = outcome;
        ready.push_back(waiter);
    }
}

void wait_group_state::finish(intrusive_list<wait_group_waiter>& ready) noexcept
{
    while (!ready.empty()) {
        // Once completed, the waiter belongs to its handler's executor.
        ready.pop_front().complete();
    }
}

} // namespace tame::detail
