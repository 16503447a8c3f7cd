#pragma once

#include <tame/detail/adaptive_limit_state.hpp>
#include <tame/permit.hpp>

#include <chrono>
#include <cstddef>
#include <utility>

namespace tame {

/// A permit of a tame::adaptive_limit: held for one call, and marked with how
/// the call went when it ends, which is the sample that moves the limit (its
/// round-trip time runs from the grant to the mark).
///
/// success() and dropped() are Netflix concurrency-limits' onSuccess and
/// onDropped; ignore(), and destruction unmarked, are onIgnore: a call that
/// was never marked says nothing about the limit (its caller was cancelled, or
/// threw for reasons of its own), and must not move it. Only the first mark
/// counts; each releases the permit.
///
/// Move-only. It may outlive its adaptive_limit (it then moves nothing).
class adaptive_permit {
  public:
    /// An empty permit.
    adaptive_permit() noexcept = default;

    adaptive_permit(adaptive_permit&& other) noexcept
        : held_{std::move(other.held_)}, state_{std::exchange(other.state_, nullptr)},
          start_{other.start_}, in_flight_{other.in_flight_}
    {
    }

    adaptive_permit& operator=(adaptive_permit&& other) noexcept
    {
        if (this != &other) {
            ignore();
            held_ = std::move(other.held_);
            state_ = std::exchange(other.state_, nullptr);
            start_ = other.start_;
            in_flight_ = other.in_flight_;
        }
        return *this;
    }

    /// Unmarked: ignore().
    ~adaptive_permit() { ignore(); }

    /// Whether a permit is held (and not marked yet).
    explicit operator bool() const noexcept { return state_ != nullptr; }

    /// Permits held by the limit's callers when this one was granted, itself
    /// included.
    std::size_t in_flight() const noexcept { return in_flight_; }

    /// The call succeeded: its round-trip time is a sample.
    void success() noexcept { mark(detail::adaptive_limit_state::outcome::success); }
    /// The call timed out, or was refused for overload: the limit is too high.
    void dropped() noexcept { mark(detail::adaptive_limit_state::outcome::dropped); }
    /// Releases the permit without a sample.
    void ignore() noexcept { mark(detail::adaptive_limit_state::outcome::ignored); }

  private:
    friend class detail::adaptive_limit_state;

    adaptive_permit(permit held, detail::adaptive_limit_state* state,
                    std::chrono::steady_clock::time_point start, std::size_t in_flight) noexcept
        : held_{std::move(held)}, state_{state}, start_{start}, in_flight_{in_flight}
    {
    }

    void mark(detail::adaptive_limit_state::outcome how) noexcept
    {
        if (state_ != nullptr) {
            std::exchange(state_, nullptr)->finish(held_, start_, in_flight_, how);
        }
    }

    permit held_;
    detail::adaptive_limit_state* state_ = nullptr;
    std::chrono::steady_clock::time_point start_{};
    std::size_t in_flight_ = 0;
};

/// Counts of an adaptive_limit since its construction, and its limit now.
struct adaptive_limit_stats {
    std::size_t limit = 0;
    /// Permits held now.
    std::size_t in_flight = 0;
    /// Permits marked success(), dropped(), and ignored (or never marked).
    std::uint64_t succeeded = 0;
    std::uint64_t dropped = 0;
    std::uint64_t ignored = 0;
};

} // namespace tame
