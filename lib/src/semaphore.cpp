#include <tame/detail/semaphore_state.hpp>
#include <tame/permit.hpp>
#include <tame/semaphore_stats.hpp>

#include <boost/system/system_category.hpp>

#include <algorithm>
#include <cerrno>

namespace tame::detail {
namespace {

// asio::error::operation_aborted and asio::error::invalid_argument, spelled
// without Asio's error.hpp: the compiled part of tame::tame includes no Asio
// header, so that it never commits its users to Asio's header-only or separately
// compiled mode.
const error_code operation_aborted{ECANCELED, boost::system::system_category()};
const error_code invalid_argument{EINVAL, boost::system::system_category()};

} // namespace

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

void semaphore_state::drop_ref() noexcept
{
    const std::uint64_t before = word_.fetch_sub(ref_one, std::memory_order_acq_rel);
    BOOST_ASSERT((before >> ref_shift) > 0);
    if ((before >> ref_shift) == 1) {
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
            waiter.outcome = errc::closed;
            ready.push_back(waiter);
        } else if (waiter.permits == 0 || waiter.permits > capacity_.load()) {
            waiter.outcome = invalid_argument;
            ready.push_back(waiter);
        } else if (queue_.empty() && try_take(waiter.permits)) {
            ready.push_back(waiter);
        } else {
            enqueue_locked(waiter);
            // A release may have added permits without the lock just before the
            // slow-path flag went up; nobody else would hand them out.
            dispatch_locked(ready);
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
        waiter.outcome = operation_aborted;
        ++cancelled_;
        ready.push_back(waiter);
        // The cancelled waiter may have been the head that held others back.
        dispatch_locked(ready);
    }
    finish(ready);
}

void semaphore_state::close(error_code reason) noexcept
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
    s.acquired = acquired_.load(std::memory_order_relaxed);
    s.waited = waited_;
    s.cancelled = cancelled_;
    s.max_waiting = max_waiting_;
    s.total_wait = std::chrono::duration_cast<std::chrono::nanoseconds>(total_wait_);
    return s;
}

void semaphore_state::enqueue_locked(semaphore_waiter& waiter)
{
    word_.fetch_or(slow_path, std::memory_order_acq_rel);
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

    const std::size_t capacity = capacity_.load();
    std::chrono::steady_clock::time_point now{};
    while (!queue_.empty() && debt_ == 0) {
        semaphore_waiter& head = queue_.front();
        if (head.permits > capacity) {
            // A shrink left the head asking for more than can ever be free;
            // failing it keeps it from blocking everyone behind it for good.
            unqueue_locked(head);
            head.outcome = invalid_argument;
            ready.push_back(head);
            continue;
        }
        if (head.permits > free) {
            break;
        }
        // Take the permits and, in the same step, a reference for their permit.
        word_.fetch_add(ref_one - (std::uint64_t{head.permits} << free_shift),
                        std::memory_order_acq_rel);
        free -= head.permits;
        unqueue_locked(head);
        if (now == std::chrono::steady_clock::time_point{}) {
            now = std::chrono::steady_clock::now();
        }
        total_wait_ += now - head.queued_at;
        acquired_.fetch_add(1, std::memory_order_relaxed);
        ready.push_back(head);
    }

    if (queue_.empty() && debt_ == 0 && !closed_) {
        word_.fetch_and(~slow_path, std::memory_order_acq_rel);
    }
}

void semaphore_state::finish(intrusive_list<semaphore_waiter>& ready) noexcept
{
    while (!ready.empty()) {
        semaphore_waiter& waiter = ready.pop_front();
        // complete() hands the waiter to another thread: read it before, not after.
        // A granted waiter's permit adopts the reference dispatch_locked() took.
        if (waiter.outcome) {
            waiter.complete(waiter.outcome, permit{});
        } else {
            waiter.complete({}, permit{this, waiter.permits});
        }
    }
}

} // namespace tame::detail
