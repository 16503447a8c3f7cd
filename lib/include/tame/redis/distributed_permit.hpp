#pragma once

#include <tame/cancel_source.hpp>
#include <tame/error.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace tame {

namespace detail {
class distributed_permit_state;
void start_release(const std::shared_ptr<distributed_permit_state>& state,
                   boost::asio::any_completion_handler<void(error_code)> handler);
} // namespace detail

/// Permits held from a tame::distributed_semaphore, under a lease that the
/// permit renews by itself every lease/3 while it lives. Destroying it (or
/// release()) gives the permits back. Move-only; an empty permit (default, or
/// moved from) holds nothing.
///
/// A lease is not a lock. If the holder cannot renew in time (Redis
/// unreachable, the process frozen past its lease), Redis gives the permits to
/// someone else, and the permit says so through lost(): a cancel_source
/// emitted (terminal) once the lease can no longer be relied on, to which work
/// is bound. It is never re-acquired silently. Only a resource that checks
/// fence() (rejecting a token lower than the highest it has seen) is safe from
/// a holder that has not yet noticed.
///
/// Thread safety: distinct permits may be used from any threads; one permit
/// is used as one object (its lost() source may be bound from any thread).
class distributed_permit {
  public:
    distributed_permit() noexcept = default;
    distributed_permit(distributed_permit&&) noexcept = default;
    distributed_permit& operator=(distributed_permit&& other) noexcept;
    distributed_permit(const distributed_permit&) = delete;
    distributed_permit& operator=(const distributed_permit&) = delete;
    ~distributed_permit();

    explicit operator bool() const noexcept { return state_ != nullptr; }
    /// How many permits this holds (0 when empty).
    std::size_t count() const noexcept;
    /// The fencing token of this grant: strictly greater than every earlier
    /// grant's of the same semaphore, for as long as Redis keeps its data.
    std::uint64_t fence() const noexcept;
    /// Emitted once the lease is lost (see above). An empty permit's source is
    /// never emitted.
    const cancel_source& lost() const noexcept;
    /// Whether lost() has been emitted.
    bool is_lost() const noexcept { return lost().cancelled(); }

    /// Gives the permits back now (the script is sent at once; its outcome is
    /// not awaited). The permit is empty afterwards.
    void release() noexcept;

    /// Gives the permits back and completes, on the handler's executor, once
    /// Redis has them: with no error, with errc::lease_lost if the lease had
    /// already run out, or with a Redis error (the lease then runs out by
    /// itself). The permit is empty afterwards. Not cancellable: cancelling
    /// would not un-send it.
    template <class Token>
    auto async_release(Token&& token)
    {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [](auto handler, std::shared_ptr<detail::distributed_permit_state> state) {
                detail::start_release(state, std::move(handler));
            },
            token, std::move(state_));
    }

  private:
    friend class detail::distributed_permit_state;
    explicit distributed_permit(std::shared_ptr<detail::distributed_permit_state> state) noexcept
        : state_{std::move(state)}
    {
    }

    std::shared_ptr<detail::distributed_permit_state> state_;
};

} // namespace tame
