#pragma once

// tame::distributed_semaphore's client side: the waiters of one semaphore
// object, its subscription to the grant channel, and its permits' leases.
// Everything here runs on the semaphore's strand.

#include "connection_state.hpp"
#include "pending.hpp"
#include "semaphore_scripts.hpp"

#include <tame/redis/distributed_semaphore.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tame::detail {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;
using redis::detail::pending_result;

class distributed_semaphore_state;

/// A duration as the scripts take it: whole milliseconds, in decimal.
inline std::string millis(std::chrono::milliseconds d)
{
    return std::to_string(d.count());
}

/// One acquire, from its start to its grant, refusal or cancellation.
struct acquire_op {
    acquire_op(const std::shared_ptr<distributed_semaphore_state>& sem, std::string id,
               std::size_t n, bool wait, distributed_acquire_handler handler);

    const std::shared_ptr<distributed_semaphore_state> sem;
    const std::string id;
    const std::size_t n;
    const bool wait;
    pending_result<distributed_permit> result;
    asio::steady_timer timer; // the next look, or the next try after a failure
    bool in_flight = false;
    bool poked = false;     // woken while a look was in flight: look again at once
    bool cancelled = false; // the caller gave up: whatever it was granted goes back
    std::optional<clock::time_point> failing_since;
};

class distributed_permit_state : public std::enable_shared_from_this<distributed_permit_state> {
  public:
    distributed_permit_state(std::shared_ptr<distributed_semaphore_state> sem, std::string id,
                             std::size_t n, std::uint64_t fence, clock::time_point valid_until);

    /// Arms the first renewal; on the strand.
    void start(clock::time_point granted_at);
    /// On the strand: gives the permits back, then calls `done` (if any).
    void release(std::optional<pending_result<>> done);

    static distributed_permit make_permit(std::shared_ptr<distributed_permit_state> state)
    {
        return distributed_permit{std::move(state)};
    }

    const std::shared_ptr<distributed_semaphore_state> sem;
    const std::string id;
    const std::size_t n;
    const std::uint64_t fence;
    /// Emitted once, by lose(); a handle that permits hand out by reference.
    cancel_source lost;

  private:
    void schedule(clock::time_point at);
    void renew();
    void lose();

    asio::steady_timer timer_;
    clock::time_point valid_until_; // renewal sent at t and confirmed: t + lease
    bool released_ = false;
};

class distributed_semaphore_state
    : public std::enable_shared_from_this<distributed_semaphore_state> {
  public:
    distributed_semaphore_state(redis::connection& conn, std::string name, std::size_t capacity,
                                distributed_semaphore_options options);

    const std::string& name() const noexcept { return name_; }
    const distributed_semaphore_options& options() const noexcept { return options_; }
    const asio::any_io_executor& strand() const noexcept { return strand_; }
    const asio::any_io_executor& executor() const noexcept { return connection_->executor(); }
    /// The capacity this process sets if Redis has none yet.
    const std::string& capacity_text() const noexcept { return capacity_; }

    /// A process-unique id for a new acquire.
    std::string next_id();

    /// Runs `script` with this semaphore's keys and `args`; `on_reply` runs on
    /// the strand.
    template <class Handler>
    void eval(const redis::script& script, redis::command args, Handler&& on_reply)
    {
        redis::detail::start_eval(connection_, script, keys_, args,
                                  asio::bind_executor(strand_, std::forward<Handler>(on_reply)));
    }

    // On the strand.
    void look(const std::shared_ptr<acquire_op>& op);
    void cancel(const std::shared_ptr<acquire_op>& op);
    /// Waiting acquires complete with operation_aborted; later ones too.
    void close();

  private:
    void on_look(const std::shared_ptr<acquire_op>& op, error_code ec, const redis::reply& r,
                 clock::time_point sent_at);
    void look_again_in(const std::shared_ptr<acquire_op>& op, std::chrono::milliseconds delay);
    void grant(const std::shared_ptr<acquire_op>& op, std::uint64_t fence,
               clock::time_point sent_at);
    void finish(const std::shared_ptr<acquire_op>& op, error_code ec, distributed_permit permit);
    void leave(const std::string& id, std::function<void()> then = {});
    void subscribe();
    void receive();
    void poke(const std::shared_ptr<acquire_op>& op);
    std::vector<std::shared_ptr<acquire_op>> waiting_ops() const;

    const std::shared_ptr<redis::detail::connection_state> connection_;
    const asio::any_io_executor strand_;
    const std::string name_;
    const redis::command keys_;
    const std::string capacity_;
    const distributed_semaphore_options options_;
    const std::string id_prefix_;
    std::atomic<std::uint64_t> next_id_{0};

    /// Weak: a waiter lives in its pending look or timer, which the context
    /// owns; the semaphore only finds it by id.
    std::map<std::string, std::weak_ptr<acquire_op>> waiting_;
    std::optional<redis::subscription> subscription_;
    bool subscribing_ = false;
    bool closed_ = false;
};

} // namespace tame::detail
