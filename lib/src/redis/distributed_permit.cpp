// A distributed permit's lease: renewed every lease/3 from the semaphore's
// strand, and declared lost, never silently re-acquired, once it cannot be
// relied on.
#include "semaphore_state.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>

namespace tame::detail {
distributed_permit_state::distributed_permit_state(std::shared_ptr<distributed_semaphore_state> sem,
                                                   std::string id, std::size_t n,
                                                   std::uint64_t fence,
                                                   clock::time_point valid_until)
    : sem{std::move(sem)}, id{std::move(id)}, n{n}, fence{fence}, timer_{this->sem->strand()},
      valid_until_{valid_until}
{
}

void distributed_permit_state::start(clock::time_point granted_at)
{
    schedule(granted_at + sem->options().lease / 3);
}

void distributed_permit_state::schedule(clock::time_point at)
{
    // Never past the end of the lease as this process knows it: the timer
    // then finds it lost.
    timer_.expires_at(std::min(at, valid_until_));
    timer_.async_wait(
        asio::bind_executor(sem->strand(), [self = shared_from_this()](error_code ec) {
            if (ec || self->released_) {
                return;
            }
            if (clock::now() >= self->valid_until_) {
                self->lose();
                return;
            }
            self->renew();
        }));
}

void distributed_permit_state::renew()
{
    const auto sent_at = clock::now();
    const auto lease = sem->options().lease;
    sem->eval(redis::detail::semaphore_scripts::get().renew, {id, millis(lease)},
              [self = shared_from_this(), sent_at, lease](error_code ec, redis::reply r) {
                  if (self->released_) {
                      return;
                  }
                  if (!ec && r.integer() == 1) {
                      // Redis extended it to its now + lease, and its now came
                      // after sent_at.
                      self->valid_until_ = sent_at + lease;
                      self->schedule(sent_at + lease / 3);
                      return;
                  }
                  if (!ec) {
                      self->lose(); // Redis says it ran out
                      return;
                  }
                  // Unreachable for now: try again soon, until the lease ends.
                  self->schedule(clock::now() + std::max(lease / 10, std::chrono::milliseconds{1}));
              });
}

void distributed_permit_state::lose()
{
    if (lost.cancelled()) {
        return;
    }
    timer_.cancel();
    lost.emit(asio::cancellation_type::terminal);
    // Whatever Redis still holds under this id goes back (a lease this
    // process gave up on early, by its own clock).
    sem->eval(redis::detail::semaphore_scripts::get().release, {id},
              [](error_code, redis::reply) {});
}

void distributed_permit_state::release(std::optional<pending_result<>> done)
{
    if (released_) {
        if (done) {
            done->complete({});
        }
        return;
    }
    released_ = true;
    timer_.cancel();
    const bool was_lost = lost.cancelled();
    sem->eval(redis::detail::semaphore_scripts::get().release, {id},
              [done = std::move(done), was_lost](error_code ec, redis::reply r) mutable {
                  if (!done) {
                      return;
                  }
                  if (!ec && (was_lost || r.integer() == 0)) {
                      ec = errc::lease_lost;
                  }
                  done->complete(ec);
              });
}

void start_release(const std::shared_ptr<distributed_permit_state>& state,
                   boost::asio::any_completion_handler<void(error_code)> handler)
{
    if (!state) {
        pending_result<> result{std::move(handler), asio::system_executor{}};
        result.complete(asio::error::invalid_argument);
        return;
    }
    asio::post(
        state->sem->strand(),
        [state, result = pending_result<>{std::move(handler), state->sem->executor()}]() mutable {
            state->release(std::move(result));
        });
}

} // namespace tame::detail

namespace tame {

distributed_permit& distributed_permit::operator=(distributed_permit&& other) noexcept
{
    if (this != &other) {
        release();
        state_ = std::move(other.state_);
    }
    return *this;
}

distributed_permit::~distributed_permit()
{
    release();
}

std::size_t distributed_permit::count() const noexcept
{
    return state_ ? state_->n : 0;
}

std::uint64_t distributed_permit::fence() const noexcept
{
    return state_ ? state_->fence : 0;
}

const cancel_source& distributed_permit::lost() const noexcept
{
    static const cancel_source never;
    return state_ ? state_->lost : never;
}

void distributed_permit::release() noexcept
{
    if (!state_) {
        return;
    }
    auto state = std::move(state_);
    auto strand = state->sem->strand();
    asio::post(strand, [state = std::move(state)] { state->release(std::nullopt); });
}

} // namespace tame
