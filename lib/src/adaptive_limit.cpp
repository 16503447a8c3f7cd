#include <tame/adaptive_permit.hpp>
#include <tame/detail/adaptive_limit_state.hpp>

#include <algorithm>

namespace tame::detail {

adaptive_limit_state::adaptive_limit_state(std::unique_ptr<limit_algorithm> algorithm,
                                           semaphore_ref semaphore, clock_function clock)
    : clock_{std::move(clock)}, semaphore_{std::move(semaphore)},
      limit_{algorithm->initial_limit()}, algorithm_{std::move(algorithm)}
{
}

std::chrono::steady_clock::time_point adaptive_limit_state::now() const
{
    return clock_ ? clock_() : std::chrono::steady_clock::now();
}

adaptive_permit adaptive_limit_state::adopt(permit granted) noexcept
{
    const auto before = refs_.fetch_add(1, std::memory_order_relaxed);
    return adaptive_permit{std::move(granted), this, now(),
                           static_cast<std::size_t>(before & permit_mask) + 1};
}

adaptive_permit adaptive_limit_state::adopt_waited(permit granted) noexcept
{
    if (!granted) {
        drop_waiter();
        return {};
    }
    // The waiter's reference becomes the permit's, in one step.
    const auto before = refs_.fetch_add(1 - waiter_one, std::memory_order_relaxed);
    return adaptive_permit{std::move(granted), this, now(),
                           static_cast<std::size_t>(before & permit_mask) + 1};
}

void adaptive_limit_state::finish(permit& held, std::chrono::steady_clock::time_point start,
                                  std::size_t in_flight, outcome how) noexcept
{
    if (how != outcome::ignored) {
        const auto rtt = now() - start;
        std::lock_guard lock{mutex_};
        const limit_sample sample{std::chrono::duration_cast<std::chrono::nanoseconds>(rtt),
                                  in_flight, how == outcome::dropped};
        std::size_t next = limit_.load(std::memory_order_relaxed);
        try {
            next = std::clamp<std::size_t>(algorithm_->update(sample), 1,
                                           semaphore_state::max_capacity);
        } catch (...) {
            // An application's algorithm that throws keeps the limit it had.
        }
        if (next != limit_.load(std::memory_order_relaxed)) {
            limit_.store(next, std::memory_order_relaxed);
            // Under the lock, so that capacities are set in the order computed.
            semaphore_->set_capacity(next);
        }
    }
    (how == outcome::success   ? succeeded_
     : how == outcome::dropped ? dropped_
                               : ignored_)
        .fetch_add(1, std::memory_order_relaxed);
    // Out of the in-flight count before the permit goes back, so that the count
    // never exceeds the permits held. `held` is the caller's: it outlives this
    // state, which the drop may end.
    drop(1);
    held.release();
}

adaptive_limit_stats adaptive_limit_state::stats() const noexcept
{
    adaptive_limit_stats s;
    s.limit = limit();
    s.in_flight = in_flight();
    s.succeeded = succeeded_.load(std::memory_order_relaxed);
    s.dropped = dropped_.load(std::memory_order_relaxed);
    s.ignored = ignored_.load(std::memory_order_relaxed);
    return s;
}

void adaptive_limit_state::drop(std::uint64_t refs) noexcept
{
    if (refs_.fetch_sub(refs, std::memory_order_acq_rel) == refs) {
        delete this;
    }
}

} // namespace tame::detail
