#pragma once

#include <tame/detail/semaphore_state.hpp>

#include <boost/config.hpp>

#include <cstddef>
#include <utility>

namespace tame {

class async_semaphore;

/// Permits held from an async_semaphore; move-only, released when destroyed.
///
/// A permit may outlive its semaphore (it keeps the shared state alive). A permit
/// that is delivered but never received, because its handler was destroyed when
/// the io_context shut down, is given back all the same.
class permit {
  public:
    /// An empty permit, holding nothing.
    permit() noexcept = default;

    BOOST_FORCEINLINE permit(permit&& other) noexcept
        : state_{std::exchange(other.state_, nullptr)}, count_{std::exchange(other.count_, 0)}
    {
    }

    permit& operator=(permit&& other) noexcept
    {
        if (this != &other) {
            release();
            state_ = std::exchange(other.state_, nullptr);
            count_ = std::exchange(other.count_, 0);
        }
        return *this;
    }

    BOOST_FORCEINLINE ~permit() { release(); }

    /// How many permits are held; 0 when empty.
    std::size_t count() const noexcept { return count_; }

    /// Whether permits are held.
    explicit operator bool() const noexcept { return state_ != nullptr; }

    /// Gives the permits back now, waking waiters in order; the permit becomes empty.
    BOOST_FORCEINLINE void release() noexcept
    {
        if (state_ != nullptr) {
            std::exchange(state_, nullptr)->give_back(std::exchange(count_, 0));
        }
    }

  private:
    friend class async_semaphore;
    friend class detail::semaphore_state;

    // Adopts the state reference that was taken together with the permits.
    permit(detail::semaphore_state* state, std::size_t count) noexcept
        : state_{state}, count_{count}
    {
    }

    detail::semaphore_state* state_ = nullptr;
    std::size_t count_ = 0;
};

namespace detail {

inline permit semaphore_state::adopt_permit(std::size_t n) noexcept
{
    return permit{this, n};
}

} // namespace detail
} // namespace tame
