#include <tame/detail/semaphore_state.hpp>
#include <tame/semaphore_stats.hpp>

#include <algorithm>
#include <stdexcept>

namespace tame::detail {
semaphore_ref semaphore_ref::make(std::size_t capacity)
{
    return semaphore_ref{new semaphore_state{capacity}, adopt_t{}};
}

// The word starts with one reference: the one make() hands out.
semaphore_state::semaphore_state(std::size_t capacity) noexcept
    : word_{(std::uint64_t{capacity} << free_shift) + ref_one}, capacity_{capacity}
{
}

semaphore_state::~semaphore_state()
{
    // Queued waiters own a reference to this state, so none can be left.
    BOOST_ASSERT(queue_.empty());
}

void semaphore_state::add_ref()
{
    std::uint64_t word = word_.load(std::memory_order_relaxed);
    do {
        if (refs_of(word) == max_references) {
            throw std::length_error{"tame::async_semaphore: too many permits and waiters"};
        }
    } while (!word_.compare_exchange_weak(word, word + ref_one, std::memory_order_relaxed));
}

void semaphore_state::drop_ref() noexcept
{
    const std::uint64_t before = word_.fetch_sub(ref_one, std::memory_order_acq_rel);
    BOOST_ASSERT(refs_of(before) > 0);
    if (refs_of(before) == 1) {
        delete this;
    }
}

void semaphore_state::give_back_slow(std::size_t n) noexcept
{
    // Keep our reference while serving the queue: dropping it first would let
    // another thread free the state under us.
    word_.fetch_add(std::uint64_t{n} << free_shift, std::memory_order_acq_rel);
    intrusive_list<semaphore_waiter> ready;
    {
        std::lock_guard lock{mutex_};
        dispatch_locked(ready);
    }
    finish(ready);
    drop_ref();
}

void semaphore_state::start(semaphore_waiter& waiter)
{
    intrusive_list<semaphore_waiter> ready;
    {
        std::lock_guard lock{mutex_};
        if (closed_) {
            waiter.outcome = acquire_outcome::closed;
            ready.push_back(waiter);
        } else if (waiter.permits == 0 || waiter.permits > capacity_.load()) {
            waiter.outcome = acquire_outcome::invalid;
            ready.push_back(waiter);
        } else if (queue_.empty() && take_or_raise_flag_locked(waiter.permits)) {
            waiter.outcome = acquire_outcome::granted;
            ready.push_back(waiter);
        } else {
            // The flag is up (raised just now, or by the waiters ahead), so every
            // release will come through the lock and serve the queue in order.
            enqueue_locked(waiter);
        }
    }
    finish(ready);
}

void semaphore_state::cancel(semaphore_waiter& waiter) noexcept
{
    intrusive_list<semaphore_waiter> ready;
    {
        std::lock_guard lock{mutex_};
        if (!waiter.queued) {
            return; // granted or failed already: that outcome is on its way
        }
        unqueue_locked(waiter);
        waiter.outcome = acquire_outcome::cancelled;
        ++cancelled_;
        ready.push_back(waiter);
        // The cancelled waiter may have been the head that held others back.
        dispatch_locked(ready);
    }
    finish(ready);
}

void semaphore_state::close(acquire_outcome reason) noexcept
{
    intrusive_list<semaphore_waiter> ready;
    {
        std::lock_guard lock{mutex_};
        closed_ = true;
        word_.fetch_or(slow_path, std::memory_order_acq_rel);
        while (!queue_.empty()) {
            semaphore_waiter& waiter = queue_.front();
            unqueue_locked(waiter);
            waiter.outcome = reason;
            ready.push_back(waiter);
        }
    }
    finish(ready);
}

void semaphore_state::set_capacity(std::size_t capacity)
{
    intrusive_list<semaphore_waiter> ready;
    {
        std::lock_guard lock{mutex_};
        const std::size_t old_capacity = capacity_.load();
        if (capacity > old_capacity) {
            // Growing first cancels what an earlier shrink still wants back.
            std::size_t grow = capacity - old_capacity;
            const std::size_t forgiven = std::min(grow, debt_);
            debt_ -= forgiven;
            grow -= forgiven;
            word_.fetch_add(std::uint64_t{grow} << free_shift, std::memory_order_acq_rel);
        } else if (capacity < old_capacity) {
            debt_ += old_capacity - capacity;
            // Until the debt is paid, releases must come through the lock to pay it.
            word_.fetch_or(slow_path, std::memory_order_acq_rel);
            fail_larger_than_locked(capacity, ready);
        }
        capacity_.store(capacity);
        dispatch_locked(ready);
    }
    finish(ready);
}

std::size_t semaphore_state::waiting() const
{
    std::lock_guard lock{mutex_};
    return waiting_;
}

bool semaphore_state::is_closed() const
{
    std::lock_guard lock{mutex_};
    return closed_;
}

semaphore_stats semaphore_state::stats() const
{
    std::lock_guard lock{mutex_};
    semaphore_stats s;
    s.acquired =
        acquired_.load(std::memory_order_relaxed) + tally_of(word_.load(std::memory_order_relaxed));
    s.waited = waited_;
    s.cancelled = cancelled_;
    s.max_waiting = max_waiting_;
    s.total_wait = std::chrono::duration_cast<std::chrono::nanoseconds>(total_wait_);
    return s;
}

bool semaphore_state::take_or_raise_flag_locked(std::size_t n) noexcept
{
    // One compare-and-swap decides between the two, so a release that adds
    // permits without the lock either lands first (and we take its permits) or
    // sees the flag (and serves the queue under the lock); none is overlooked.
    std::uint64_t word = word_.load(std::memory_order_relaxed);
    for (;;) {
        if ((word & slow_path) != 0) {
            return false; // a shrink is still owed: wait behind it
        }
        if (free_of(word) >= n) {
            // No reference is taken: the waiter's own goes to its permit.
            if (word_.compare_exchange_weak(word, word - (std::uint64_t{n} << free_shift),
                                            std::memory_order_acquire, std::memory_order_relaxed)) {
                acquired_.fetch_add(1, std::memory_order_relaxed);
                return true;
            }
        } else if (word_.compare_exchange_weak(word, word | slow_path, std::memory_order_acq_rel,
                                               std::memory_order_relaxed)) {
            return false;
        }
    }
}

void semaphore_state::enqueue_locked(semaphore_waiter& waiter)
{
    BOOST_ASSERT((word_.load(std::memory_order_relaxed) & slow_path) != 0);
    waiter.queued = true;
    waiter.queued_at = std::chrono::steady_clock::now();
    queue_.push_back(waiter);
    ++waiting_;
    ++waited_;
    max_waiting_ = std::max(max_waiting_, waiting_);
}

void semaphore_state::unqueue_locked(semaphore_waiter& waiter) noexcept
{
    queue_.erase(waiter);
    waiter.queued = false;
    --waiting_;
}

void semaphore_state::dispatch_locked(intrusive_list<semaphore_waiter>& ready) noexcept
{
    // While the slow-path flag is up, other threads only add free permits (and
    // move references), so `free` only ever underestimates.
    std::uint64_t free = free_of(word_.load(std::memory_order_acquire));

    // Pay the shrink first: the permits it removes must not reach a waiter.
    if (debt_ > 0 && free > 0) {
        const std::uint64_t paid = std::min<std::uint64_t>(debt_, free);
        word_.fetch_sub(paid << free_shift, std::memory_order_acq_rel);
        debt_ -= static_cast<std::size_t>(paid);
        free -= paid;
    }

    std::chrono::steady_clock::time_point now{};
    while (!queue_.empty() && debt_ == 0) {
        semaphore_waiter& head = queue_.front();
        if (head.permits > free) {
            break;
        }
        // The waiter's own reference will go to its permit.
        word_.fetch_sub(std::uint64_t{head.permits} << free_shift, std::memory_order_acq_rel);
        free -= head.permits;
        unqueue_locked(head);
        if (now == std::chrono::steady_clock::time_point{}) {
            now = std::chrono::steady_clock::now();
        }
        total_wait_ += now - head.queued_at;
        acquired_.fetch_add(1, std::memory_order_relaxed);
        head.outcome = acquire_outcome::granted;
        ready.push_back(head);
    }

    if (queue_.empty() && debt_ == 0 && !closed_) {
        word_.fetch_and(~slow_path, std::memory_order_acq_rel);
    }
}

void semaphore_state::fail_larger_than_locked(std::size_t capacity,
                                              intrusive_list<semaphore_waiter>& ready) noexcept
{
    // These waiters can never be granted; failing them now, rather than when
    // they reach the head, keeps them from blocking everyone behind them.
    intrusive_list<semaphore_waiter> kept;
    while (!queue_.empty()) {
        semaphore_waiter& waiter = queue_.pop_front();
        if (waiter.permits > capacity) {
            waiter.queued = false;
            --waiting_;
            waiter.outcome = acquire_outcome::invalid;
            ready.push_back(waiter);
        } else {
            kept.push_back(waiter);
        }
    }
    queue_.splice_back(kept);
}

void semaphore_state::finish(intrusive_list<semaphore_waiter>& ready) noexcept
{
    while (!ready.empty()) {
        // Once completed, the waiter belongs to its handler's executor.
        ready.pop_front().complete();
    }
}

} // namespace tame::detail
