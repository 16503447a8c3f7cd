#pragma once

#include <tame/error.hpp>
#include <tame/redis/connection.hpp>
#include <tame/redis/distributed_permit.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>

namespace tame {

struct distributed_semaphore_options {
    /// How long a grant stays valid without renewal. The holder renews every
    /// lease/3; a killed holder's permits come back within one lease. A waiter
    /// refreshes its place in the queue as often, and a crashed waiter leaves
    /// the queue within one lease.
    std::chrono::milliseconds lease{10000};
    /// An acquire whose calls to Redis keep failing (unreachable, restarting)
    /// for this long fails with errc::redis_unavailable; shorter outages are
    /// ridden out.
    std::chrono::milliseconds unavailable_timeout{5000};
};

/// What Redis holds for a semaphore, at one moment.
struct distributed_semaphore_stats {
    std::size_t capacity = 0;
    std::size_t used = 0;    ///< permits held
    std::size_t holders = 0; ///< grants held
    std::size_t waiting = 0; ///< acquires in the queue
};

namespace detail {
class distributed_semaphore_state;
using distributed_acquire_handler =
    boost::asio::any_completion_handler<void(error_code, distributed_permit)>;
void start_acquire(const std::shared_ptr<distributed_semaphore_state>& state, std::size_t n,
                   bool wait, distributed_acquire_handler handler);
void start_set_capacity(const std::shared_ptr<distributed_semaphore_state>& state,
                        std::size_t capacity,
                        boost::asio::any_completion_handler<void(error_code)> handler);
void start_stats(
    const std::shared_ptr<distributed_semaphore_state>& state,
    boost::asio::any_completion_handler<void(error_code, distributed_semaphore_stats)> handler);
} // namespace detail

/// A named, weighted, leased semaphore whose permits are shared by every
/// process that opens the same name on the same Redis: async_semaphore's
/// shape, beyond one machine.
///
/// Every change is one atomic Lua script; expiry is measured on Redis's clock
/// (TIME), never a client's. Waiters are served first come, first served
/// (a large request at the head is not overtaken). A waiter is woken by
/// pub/sub, and looks again by itself at the nearest lease expiry and every
/// lease/3 (which also keeps its place: a crashed waiter's place lapses), so a
/// lost message delays a grant but never loses it. Each grant carries a
/// fencing token, strictly increasing.
///
/// The capacity is Redis's: the first process to use a name sets it (to the
/// one given here); async_set_capacity() changes it for every process.
///
/// Every operation takes any completion token, completes once on the
/// handler's associated executor, and is cancellable (terminal, partial, total):
/// a cancelled acquire leaves the queue in the same script that gives back a
/// grant made in the meantime, and completes with operation_aborted.
///
/// Thread safety: every member may be called from any thread. The semaphore
/// must be destroyed before its connection; permits may outlive it (they
/// renew and release through the connection, while it is open).
class distributed_semaphore {
  public:
    distributed_semaphore(redis::connection& conn, std::string name, std::size_t capacity,
                          distributed_semaphore_options options = {});
    /// `{conn, name, capacity, lease}`: the other options by default.
    distributed_semaphore(redis::connection& conn, std::string name, std::size_t capacity,
                          std::chrono::milliseconds lease)
        : distributed_semaphore{conn, std::move(name), capacity, options_with(lease)}
    {
    }
    /// Acquires still waiting complete with operation_aborted.
    ~distributed_semaphore();
    distributed_semaphore(const distributed_semaphore&) = delete;
    distributed_semaphore& operator=(const distributed_semaphore&) = delete;

    /// The name shared by every process that draws on these permits.
    const std::string& name() const noexcept;
    /// The options given to the constructor.
    const distributed_semaphore_options& options() const noexcept;

    /// Waits for `n` permits and completes with them; with
    /// errc::redis_unavailable once Redis has been unreachable for
    /// options().unavailable_timeout; with asio::error::invalid_argument when
    /// `n` is 0 or more than the capacity; with a Redis error (errc::redis_error)
    /// if a script fails.
    template <class Token>
    auto async_acquire(std::size_t n, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(error_code, distributed_permit)>(
            [](auto handler, std::shared_ptr<detail::distributed_semaphore_state> state,
               std::size_t count) {
                detail::start_acquire(state, count, true, std::move(handler));
            },
            token, state_, n);
    }

    template <class Token>
    auto async_acquire(Token&& token)
    {
        return async_acquire(1, std::forward<Token>(token));
    }

    /// Takes `n` permits if they are free now and nobody waits: completes with
    /// the permit, or with an empty one (and no error) otherwise. Never queues.
    template <class Token>
    auto async_try_acquire(std::size_t n, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(error_code, distributed_permit)>(
            [](auto handler, std::shared_ptr<detail::distributed_semaphore_state> state,
               std::size_t count) {
                detail::start_acquire(state, count, false, std::move(handler));
            },
            token, state_, n);
    }

    /// Sets the capacity for every process sharing the name; waiters that now
    /// fit are granted at once. Holders beyond a lowered capacity keep their
    /// permits until they release them.
    template <class Token>
    auto async_set_capacity(std::size_t capacity, Token&& token)
    {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [](auto handler, std::shared_ptr<detail::distributed_semaphore_state> state,
               std::size_t c) { detail::start_set_capacity(state, c, std::move(handler)); },
            token, state_, capacity);
    }

    /// What Redis holds for the name now: capacity, permits used, holders,
    /// waiters. Completion signature `void(error_code, distributed_semaphore_stats)`.
    template <class Token>
    auto async_stats(Token&& token)
    {
        return boost::asio::async_initiate<Token, void(error_code, distributed_semaphore_stats)>(
            [](auto handler, std::shared_ptr<detail::distributed_semaphore_state> state) {
                detail::start_stats(state, std::move(handler));
            },
            token, state_);
    }

  private:
    static distributed_semaphore_options options_with(std::chrono::milliseconds lease)
    {
        distributed_semaphore_options options;
        options.lease = lease;
        return options;
    }

    std::shared_ptr<detail::distributed_semaphore_state> state_;
};

} // namespace tame
