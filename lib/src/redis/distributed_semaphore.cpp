// tame::distributed_semaphore: acquires as state machines on the semaphore's
// strand. An acquire "looks" (runs the acquire script): it is granted, told
// to wait in the queue, or refused. A waiter looks again when the grant
// channel names it, when a message may have been lost, at the nearest lease
// expiry, and every lease/3 (which keeps its heartbeat); a look is
// idempotent, so a duplicate wake-up costs one round trip and nothing else.
#include "semaphore_state.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>

namespace tame::detail {
namespace {

using namespace std::chrono_literals;

/// How long a failed look waits before the next: short, as the connection
/// itself paces its attempts to reconnect.
constexpr std::chrono::milliseconds retry_delay{100};

std::string random_prefix()
{
    std::random_device device;
    std::uniform_int_distribution<unsigned long long> digits;
    char text[24];
    std::snprintf(text, sizeof text, "%016llx", digits(device));
    return text;
}

/// In an acquire's slot: the caller gives up, on the strand.
class acquire_canceller {
  public:
    explicit acquire_canceller(std::weak_ptr<acquire_op> op) : op_{std::move(op)} {}

    void operator()(asio::cancellation_type)
    {
        if (auto op = op_.lock()) {
            asio::post(op->sem->strand(), [op] { op->sem->cancel(op); });
        }
    }

  private:
    std::weak_ptr<acquire_op> op_;
};

/// Whether a failed look may succeed if tried again: Redis unreachable, or
/// answering but not ready (loading its data after a restart, busy with a
/// script, a failover).
bool transient(error_code ec, const redis::reply& r)
{
    if (ec == errc::redis_unavailable) {
        return true;
    }
    if (ec != errc::redis_error) {
        return false;
    }
    for (const char* prefix : {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN"}) {
        if (r.text().rfind(prefix, 0) == 0) {
            return true;
        }
    }
    return false;
}

} // namespace

acquire_op::acquire_op(const std::shared_ptr<distributed_semaphore_state>& sem, std::string id,
                       std::size_t n, bool wait, distributed_acquire_handler handler)
    : sem{sem}, id{std::move(id)}, n{n}, wait{wait}, result{std::move(handler), sem->executor()},
      timer{sem->strand()}
{
}

distributed_semaphore_state::distributed_semaphore_state(redis::connection& conn, std::string name,
                                                         std::size_t capacity,
                                                         distributed_semaphore_options options)
    : connection_{conn.state_}, strand_{asio::make_strand(connection_->executor())},
      name_{std::move(name)}, keys_{redis::detail::semaphore_keys(name_)},
      capacity_{std::to_string(capacity)}, options_{options}, id_prefix_{random_prefix()}
{
}

std::string distributed_semaphore_state::next_id()
{
    return id_prefix_ + "-" + std::to_string(next_id_.fetch_add(1, std::memory_order_relaxed));
}

void distributed_semaphore_state::look(const std::shared_ptr<acquire_op>& op)
{
    if (op->cancelled || op->result.done()) {
        return;
    }
    if (closed_) {
        cancel(op); // whatever an earlier look was given goes back
        return;
    }
    // Known from its first look on, so that a grant published before that
    // look's reply has arrived still wakes it.
    waiting_.emplace(op->id, op);
    if (op->in_flight) {
        op->poked = true;
        return;
    }
    op->in_flight = true;
    op->poked = false;
    const auto sent_at = clock::now();
    const auto& lease = options_.lease;
    eval(redis::detail::semaphore_scripts::get().acquire,
         {op->id, std::to_string(op->n), millis(lease), capacity_, op->wait ? "wait" : "try",
          millis(lease)},
         [self = shared_from_this(), op, sent_at](error_code ec, redis::reply r) {
             self->on_look(op, ec, r, sent_at);
         });
}

void distributed_semaphore_state::on_look(const std::shared_ptr<acquire_op>& op, error_code ec,
                                          const redis::reply& r, clock::time_point sent_at)
{
    op->in_flight = false;
    const auto& parts = r.elements();
    const std::int64_t code = !ec && !parts.empty() ? parts[0].integer() : -100;
    if (op->cancelled) {
        if (code == 1 || code == 0) {
            // The look ran after the leave (a NOSCRIPT retry overtook it):
            // leave again.
            leave(op->id);
        }
        return;
    }
    if (closed_ && code != -100) {
        cancel(op); // the semaphore went while this look was on its way
        return;
    }
    if (ec) {
        if (!transient(ec, r)) {
            finish(op, ec, {}); // a script error, or the connection closed
            return;
        }
        const auto now = clock::now();
        if (!op->failing_since) {
            op->failing_since = sent_at;
        }
        if (now - *op->failing_since >= options_.unavailable_timeout) {
            // If an earlier look queued it, its place goes too (or lapses
            // with its heartbeat, if Redis stays away).
            leave(op->id);
            finish(op, errc::redis_unavailable, {});
            return;
        }
        look_again_in(op, retry_delay);
        return;
    }
    op->failing_since.reset();
    switch (code) {
    case 1:
        grant(op, static_cast<std::uint64_t>(parts.size() > 1 ? parts[1].integer() : 0), sent_at);
        return;
    case 0: {
        subscribe();
        if (op->poked) {
            look(op);
            return;
        }
        const auto next = std::chrono::milliseconds{parts.size() > 1 ? parts[1].integer() : 0};
        look_again_in(op, std::clamp(next, std::chrono::milliseconds{1}, options_.lease / 3));
        return;
    }
    case -1:
        finish(op, {}, {}); // try: no room now
        return;
    case -2:
        finish(op, asio::error::invalid_argument, {});
        return;
    default:
        finish(op, errc::redis_error, {});
        return;
    }
}

void distributed_semaphore_state::look_again_in(const std::shared_ptr<acquire_op>& op,
                                                std::chrono::milliseconds delay)
{
    op->timer.expires_after(delay);
    op->timer.async_wait(asio::bind_executor(strand_, [self = shared_from_this(), op](error_code) {
        // A cancelled wait is a wake-up too (poke() cancels the timer and looks).
        if (!op->in_flight) {
            self->look(op);
        }
    }));
}

void distributed_semaphore_state::poke(const std::shared_ptr<acquire_op>& op)
{
    op->timer.cancel();
    look(op);
}

void distributed_semaphore_state::grant(const std::shared_ptr<acquire_op>& op, std::uint64_t fence,
                                        clock::time_point sent_at)
{
    auto state = std::make_shared<distributed_permit_state>(shared_from_this(), op->id, op->n,
                                                            fence, sent_at + options_.lease);
    state->start(sent_at);
    finish(op, {}, distributed_permit_state::make_permit(std::move(state)));
}

void distributed_semaphore_state::finish(const std::shared_ptr<acquire_op>& op, error_code ec,
                                         distributed_permit permit)
{
    waiting_.erase(op->id);
    op->timer.cancel();
    op->result.complete(ec, std::move(permit));
}

void distributed_semaphore_state::cancel(const std::shared_ptr<acquire_op>& op)
{
    if (op->cancelled || op->result.done()) {
        return;
    }
    op->cancelled = true;
    op->timer.cancel();
    waiting_.erase(op->id);
    // The leave is pipelined behind any look still in flight on the same
    // connection, so it runs after it and takes back what that look was given.
    // The caller hears of the cancellation once Redis has run it: the queue
    // no longer holds it then, on any process's view.
    leave(op->id, [self = shared_from_this(), op] {
        self->finish(op, asio::error::operation_aborted, {});
    });
}

void distributed_semaphore_state::leave(const std::string& id, std::function<void()> then)
{
    eval(redis::detail::semaphore_scripts::get().release, {id},
         [then = std::move(then)](error_code, redis::reply) {
             // Whatever the outcome: if Redis could not be told, the place
             // lapses with its heartbeat, and a grant with its lease.
             if (then) {
                 then();
             }
         });
}

void distributed_semaphore_state::subscribe()
{
    if (subscription_ || subscribing_ || closed_) {
        return;
    }
    subscribing_ = true;
    connection_->subscribe(
        keys_.back(), asio::bind_executor(strand_, [self = shared_from_this()](
                                                       error_code ec, redis::subscription sub) {
            self->subscribing_ = false;
            if (ec || self->closed_) {
                return; // the timers still look; the next waiter tries again
            }
            self->subscription_.emplace(std::move(sub));
            self->receive();
            // A grant published before the subscription took effect was missed.
            for (const auto& op : self->waiting_ops()) {
                self->poke(op);
            }
        }));
}

void distributed_semaphore_state::receive()
{
    subscription_->async_receive(
        asio::bind_executor(strand_, [self = shared_from_this()](error_code ec, redis::message m) {
            if (ec) {
                self->subscription_.reset();
                return;
            }
            if (m.after_gap) {
                for (const auto& op : self->waiting_ops()) {
                    self->poke(op);
                }
            }
            if (const auto it = self->waiting_.find(m.payload); it != self->waiting_.end()) {
                if (auto op = it->second.lock()) {
                    self->poke(op);
                }
            }
            if (self->subscription_) {
                self->receive();
            }
        }));
}

void distributed_semaphore_state::close()
{
    closed_ = true;
    subscription_.reset();
    for (const auto& op : waiting_ops()) {
        cancel(op);
    }
}

std::vector<std::shared_ptr<acquire_op>> distributed_semaphore_state::waiting_ops() const
{
    std::vector<std::shared_ptr<acquire_op>> ops;
    for (const auto& [id, weak] : waiting_) {
        if (auto op = weak.lock()) {
            ops.push_back(std::move(op));
        }
    }
    return ops;
}

void start_acquire(const std::shared_ptr<distributed_semaphore_state>& state, std::size_t n,
                   bool wait, distributed_acquire_handler handler)
{
    auto op = std::make_shared<acquire_op>(state, state->next_id(), n, wait, std::move(handler));
    if (n == 0) {
        asio::post(state->strand(),
                   [op] { op->result.complete(asio::error::invalid_argument, {}); });
        return;
    }
    op->result.arm<acquire_canceller>(std::weak_ptr<acquire_op>{op});
    asio::post(state->strand(), [op] { op->sem->look(op); });
}

void start_set_capacity(const std::shared_ptr<distributed_semaphore_state>& state,
                        std::size_t capacity,
                        boost::asio::any_completion_handler<void(error_code)> handler)
{
    auto result = std::make_shared<pending_result<>>(std::move(handler), state->executor());
    result->arm<redis::detail::abandon_canceller<>>(std::weak_ptr<pending_result<>>{result},
                                                    state->strand());
    asio::post(state->strand(), [state, result, capacity] {
        state->eval(redis::detail::semaphore_scripts::get().set_capacity,
                    {std::to_string(capacity)},
                    [result](error_code ec, redis::reply) { result->complete(ec); });
    });
}

void start_stats(
    const std::shared_ptr<distributed_semaphore_state>& state,
    boost::asio::any_completion_handler<void(error_code, distributed_semaphore_stats)> handler)
{
    auto result = std::make_shared<pending_result<distributed_semaphore_stats>>(std::move(handler),
                                                                                state->executor());
    result->arm<redis::detail::abandon_canceller<distributed_semaphore_stats>>(
        std::weak_ptr<pending_result<distributed_semaphore_stats>>{result}, state->strand());
    asio::post(state->strand(), [state, result] {
        state->eval(redis::detail::semaphore_scripts::get().stats, {state->capacity_text()},
                    [result](error_code ec, redis::reply r) {
                        distributed_semaphore_stats s;
                        const auto& v = r.elements();
                        if (!ec && v.size() == 4) {
                            s.capacity = static_cast<std::size_t>(v[0].integer());
                            s.used = static_cast<std::size_t>(v[1].integer());
                            s.holders = static_cast<std::size_t>(v[2].integer());
                            s.waiting = static_cast<std::size_t>(v[3].integer());
                        }
                        result->complete(ec, s);
                    });
    });
}

} // namespace tame::detail

namespace tame {

distributed_semaphore::distributed_semaphore(redis::connection& conn, std::string name,
                                             std::size_t capacity,
                                             distributed_semaphore_options options)
    : state_{std::make_shared<detail::distributed_semaphore_state>(conn, std::move(name), capacity,
                                                                   options)}
{
}

distributed_semaphore::~distributed_semaphore()
{
    asio::post(state_->strand(), [state = state_] { state->close(); });
}

const std::string& distributed_semaphore::name() const noexcept
{
    return state_->name();
}

const distributed_semaphore_options& distributed_semaphore::options() const noexcept
{
    return state_->options();
}

} // namespace tame
