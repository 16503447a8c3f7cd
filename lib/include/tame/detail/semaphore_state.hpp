#pragma once

#include <tame/detail/intrusive_list.hpp>

#include <boost/assert.hpp>
#include <boost/config.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <utility>

namespace tame {
class permit;
struct semaphore_stats;
} // namespace tame

namespace tame::detail {

class semaphore_state;

/// Shared ownership of a semaphore_state. The references are counted in the
/// state's atomic word, next to the free permits, so that a permit can own one
/// at no extra cost (see semaphore_state).
class semaphore_ref {
  public:
    semaphore_ref() noexcept = default;
    /// Throws std::length_error when the state has max_references already.
    semaphore_ref(const semaphore_ref& other);
    semaphore_ref(semaphore_ref&& other) noexcept : state_{std::exchange(other.state_, nullptr)} {}
    semaphore_ref& operator=(semaphore_ref other) noexcept
    {
        std::swap(state_, other.state_);
        return *this;
    }
    ~semaphore_ref();

    semaphore_state* get() const noexcept { return state_; }
    semaphore_state* operator->() const noexcept { return state_; }
    explicit operator bool() const noexcept { return state_ != nullptr; }

    /// Gives up the reference without dropping it, for a permit to adopt.
    semaphore_state* release() noexcept { return std::exchange(state_, nullptr); }

    /// A state with `capacity` free permits, owned by the returned reference.
    static semaphore_ref make(std::size_t capacity);

  private:
    struct adopt_t {};
    semaphore_ref(semaphore_state* state, adopt_t) noexcept : state_{state} {}

    semaphore_state* state_ = nullptr;
};

/// How a queued acquire ended; decided under the state's lock.
enum class acquire_outcome : unsigned char {
    pending,
    granted,   // the permits were taken; the waiter's reference goes to the permit
    cancelled, // asio::error::operation_aborted, through the cancellation slot
    aborted,   // asio::error::operation_aborted, the semaphore was destroyed
    closed,    // tame::errc::closed
    invalid,   // asio::error::invalid_argument, more than the capacity
};

/// A queued async_acquire, type-erased; queued_handler supplies complete().
class semaphore_waiter : public intrusive_list_node {
  public:
    semaphore_waiter(semaphore_ref owner, std::size_t permits) noexcept
        : owner{std::move(owner)}, permits{permits}
    {
    }

    /// Schedules the handler on its executor with the outcome; called once, never
    /// under the lock. The handler turns the outcome into its arguments.
    virtual void complete() = 0;

    /// Keeps the state (its mutex, for the canceller) alive until the handler
    /// has been invoked or destroyed; a granted permit takes it over.
    semaphore_ref owner;
    const std::size_t permits;

    // Written under the owner's mutex; read by the handler after complete().
    std::chrono::steady_clock::time_point queued_at;
    acquire_outcome outcome = acquire_outcome::pending;
    bool queued = false;

  protected:
    ~semaphore_waiter() = default;
};

/// The shared state of an async_semaphore and its permits.
///
/// One atomic word holds the free permits, the number of references to the state
/// (the semaphore, each permit, each queued waiter), a tally of recent fast
/// acquisitions and a "slow path" flag. While nobody waits, nothing is owed to a
/// shrink and the semaphore is open, the flag is clear: acquiring and releasing
/// are then one compare-and-swap each, without the mutex, and that same operation
/// counts the permit's reference and the acquisition. Otherwise try_take() fails
/// (it must not overtake a waiter) and releases take the mutex to hand the freed
/// permits to the queue in order. Counting the permits' references is what lets a
/// permit outlive its semaphore: the last reference frees the state.
class semaphore_state {
  public:
    /// Capacities above this would not fit the atomic word.
    static constexpr std::size_t max_capacity = (std::uint64_t{1} << 31) - 1;
    /// Permits and queued waiters that may exist at once, plus the semaphore.
    static constexpr std::size_t max_references = (std::uint64_t{1} << 24) - 1;

    semaphore_state(const semaphore_state&) = delete;
    semaphore_state& operator=(const semaphore_state&) = delete;

    /// Takes `n` free permits, and a reference for their permit, unless that
    /// would overtake a waiter.
    BOOST_FORCEINLINE bool try_take(std::size_t n) noexcept
    {
        std::uint64_t word = word_.load(std::memory_order_relaxed);
        do {
            if ((word & slow_path) != 0 || free_of(word) < n || refs_of(word) == max_references) {
                return false;
            }
            // The tally is the top field: from 255 it wraps to 0, losing the
            // carry, and the thread that wrapped it moves 256 to acquired_.
        } while (!word_.compare_exchange_weak(
            word, word - (std::uint64_t{n} << free_shift) + ref_one + tally_one,
            std::memory_order_acquire, std::memory_order_relaxed));
        if (tally_of(word) == tally_mask) {
            acquired_.fetch_add(tally_mask + 1, std::memory_order_relaxed);
        }
        return true;
    }

    /// Returns `n` permits and their permit's reference.
    BOOST_FORCEINLINE void give_back(std::size_t n) noexcept
    {
        std::uint64_t word = word_.load(std::memory_order_relaxed);
        while ((word & slow_path) == 0) {
            // The flag is up for good once the semaphore is gone, so here it still
            // holds its own reference and ours cannot be the last.
            if (word_.compare_exchange_weak(word, word + (std::uint64_t{n} << free_shift) - ref_one,
                                            std::memory_order_release, std::memory_order_relaxed)) {
                return;
            }
        }
        give_back_slow(n);
    }

    /// Grants the waiter at once, queues it, or fails it (closed, bad count).
    void start(semaphore_waiter& waiter);

    /// Removes a queued waiter and completes it with operation_aborted; does
    /// nothing when its outcome is already decided.
    void cancel(semaphore_waiter& waiter) noexcept;

    /// Fails every waiter with `reason` (closed or aborted), and every later
    /// start() with closed.
    void close(acquire_outcome reason) noexcept;

    void set_capacity(std::size_t capacity);

    std::size_t available() const noexcept
    {
        return static_cast<std::size_t>(free_of(word_.load(std::memory_order_relaxed)));
    }

    std::size_t capacity() const noexcept { return capacity_.load(std::memory_order_relaxed); }

    std::size_t waiting() const;
    bool is_closed() const;
    semaphore_stats stats() const;

    /// A permit for `n` permits that adopts a reference already held: the one
    /// try_take() took, or the granted waiter's. Defined in permit.hpp.
    permit adopt_permit(std::size_t n) noexcept;

  private:
    friend class semaphore_ref;

    // The word: bit 0 the slow-path flag; bits 1-31 the free permits (up to
    // max_capacity, even while a shrink is being paid); bits 32-55 the
    // references; bits 56-63 the tally of fast acquisitions not yet in acquired_.
    static constexpr std::uint64_t slow_path = 1;
    static constexpr unsigned free_shift = 1;
    static constexpr std::uint64_t free_mask = max_capacity;
    static constexpr unsigned ref_shift = 32;
    static constexpr std::uint64_t ref_one = std::uint64_t{1} << ref_shift;
    static constexpr unsigned tally_shift = 56;
    static constexpr std::uint64_t tally_one = std::uint64_t{1} << tally_shift;
    static constexpr std::uint64_t tally_mask = 0xff;

    static std::uint64_t free_of(std::uint64_t word) noexcept
    {
        return (word >> free_shift) & free_mask;
    }
    static std::uint64_t refs_of(std::uint64_t word) noexcept
    {
        return (word >> ref_shift) & max_references;
    }
    static std::uint64_t tally_of(std::uint64_t word) noexcept { return word >> tally_shift; }

    explicit semaphore_state(std::size_t capacity) noexcept;
    ~semaphore_state();

    void add_ref();
    void drop_ref() noexcept;
    void give_back_slow(std::size_t n) noexcept;
    bool take_or_raise_flag_locked(std::size_t n) noexcept;
    void enqueue_locked(semaphore_waiter& waiter);
    void unqueue_locked(semaphore_waiter& waiter) noexcept;
    void dispatch_locked(intrusive_list<semaphore_waiter>& ready) noexcept;
    void fail_larger_than_locked(std::size_t capacity,
                                 intrusive_list<semaphore_waiter>& ready) noexcept;
    void finish(intrusive_list<semaphore_waiter>& ready) noexcept;

    std::atomic<std::uint64_t> word_;
    std::atomic<std::uint64_t> acquired_{0}; // plus the tally in word_
    std::atomic<std::size_t> capacity_;

    mutable std::mutex mutex_;
    intrusive_list<semaphore_waiter> queue_;
    std::size_t waiting_ = 0;
    std::size_t debt_ = 0; // permits a shrink removed that were not free at the time
    bool closed_ = false;
    std::uint64_t waited_ = 0;
    std::uint64_t cancelled_ = 0;
    std::size_t max_waiting_ = 0;
    std::chrono::steady_clock::duration total_wait_{};
};

inline semaphore_ref::semaphore_ref(const semaphore_ref& other) : state_{other.state_}
{
    if (state_ != nullptr) {
        state_->add_ref();
    }
}

inline semaphore_ref::~semaphore_ref()
{
    if (state_ != nullptr) {
        state_->drop_ref();
    }
}

} // namespace tame::detail
