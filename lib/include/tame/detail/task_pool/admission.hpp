#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/signalled_handler.hpp>
#include <tame/detail/task_pool/keys.hpp>
#include <tame/detail/task_pool/launch.hpp>
#include <tame/detail/task_pool/state.hpp>
#include <tame/detail/task_pool/task.hpp>
#include <tame/error.hpp>
#include <tame/permit.hpp>

#include <boost/asio/associator.hpp>

#include <memory>
#include <string>
#include <type_traits>
#include <utility>

namespace tame::detail {

/// A submission that waits: for its key's turn (when keyed and the key is
/// busy), then for a slot. It is the handler of those acquires, with every
/// associated property of the caller's handler, so the caller's slot cancels
/// the wait. Counted in `waiting` and in `tasks` until it is decided.
template <template <class> class Kind, class Handler, class F>
class pool_admission {
  public:
    using value_type = typename pool_result_of<F>::type;

    pool_admission(std::shared_ptr<task_pool_state> state, pool_count count, Handler handler, F f,
                   pool_keys::hold key, permit turn)
        : state_{std::move(state)}, count_{std::move(count)}, handler_{std::move(handler)},
          f_{std::move(f)}, key_{std::move(key)}, turn_{std::move(turn)}
    {
    }

    pool_admission(pool_admission&&) noexcept = default;
    pool_admission& operator=(pool_admission&&) = delete;

    /// Destroyed undecided (its io_context was destroyed, or a wait could not
    /// start): it no longer holds back a drain.
    ~pool_admission()
    {
        if (state_) {
            state_->leave_waiting(); // and count_ gives back its count
        }
    }

    void operator()(error_code ec, permit granted)
    {
        if (ec) {
            fail(ec);
            return;
        }
        if (key_ && !turn_) {
            // The key's turn has come; now a slot.
            turn_ = std::move(granted);
            permit slot = state_->slots.try_acquire();
            if (!slot) {
                async_semaphore& slots = state_->slots;
                slots.async_acquire(std::move(*this));
                return;
            }
            granted = std::move(slot);
        }
        auto state = std::move(state_); // decided
        state->leave_waiting();
        if (!launch_pool_task<Kind>(*state, handler_, f_, std::move(count_), std::move(granted),
                                    std::move(turn_), std::move(key_), false)) {
            // Admitted before close() and started after it: refused, as any
            // submission after close() is.
            state->rejected.fetch_add(1, std::memory_order_relaxed);
            Kind<Handler>::template fail<value_type>(std::move(handler_), errc::closed);
        }
    }

    const Handler& inner() const noexcept { return handler_; }

  private:
    void fail(error_code ec)
    {
        auto state = std::move(state_); // decided
        state->leave_waiting();
        if (ec == errc::closed) {
            state->rejected.fetch_add(1, std::memory_order_relaxed);
        }
        turn_.release();
        key_.reset();
        count_.reset();
        Kind<Handler>::template fail<value_type>(std::move(handler_), ec);
    }

    std::shared_ptr<task_pool_state> state_; // null once moved from or decided
    pool_count count_;
    Handler handler_;
    F f_;
    pool_keys::hold key_;
    permit turn_;
};

/// The initiation of async_submit and async_run: start at once when the key
/// and a slot are free, refuse when closed or when too many wait, else wait.
template <template <class> class Kind>
struct initiate_pool_task {
    std::shared_ptr<task_pool_state> state;

    asio::any_io_executor get_executor() const noexcept { return state->executor; }

    template <class Handler, class F>
    void operator()(Handler&& handler, F&& f) const
    {
        start(std::forward<Handler>(handler), std::forward<F>(f), nullptr);
    }

    template <class Handler, class F>
    void operator()(Handler&& handler, F&& f, const std::string& key) const
    {
        start(std::forward<Handler>(handler), std::forward<F>(f), &key);
    }

  private:
    template <class Handler, class F>
    void start(Handler&& handler, F&& given, const std::string* key) const
    {
        std::decay_t<F> f{std::forward<F>(given)}; // the pool's own copy: a caller's lvalue stays
        using handler_type = std::decay_t<Handler>;
        using kind = Kind<handler_type>;
        using value_type = typename pool_result_of<F>::type;
        task_pool_state& pool = *state;
        if (pool.is_closed()) {
            pool.rejected.fetch_add(1, std::memory_order_relaxed);
            kind::template fail_later<value_type>(std::move(handler), pool.executor, errc::closed);
            return;
        }
        // Counted before a slot is taken: a drain that sees no work after a
        // close() must not be followed by a task started from here.
        pool_count count{pool.tasks};
        pool_keys::hold hold;
        permit turn;
        if (key != nullptr) {
            hold = pool.keys.join(*key);
            turn = hold.turn().try_acquire();
        }
        if (key == nullptr || turn) {
            if (permit slot = pool.slots.try_acquire()) {
                if (!launch_pool_task<Kind>(pool, handler, f, std::move(count), std::move(slot),
                                            std::move(turn), std::move(hold), true)) {
                    pool.rejected.fetch_add(1, std::memory_order_relaxed);
                    kind::template fail_later<value_type>(std::move(handler), pool.executor,
                                                          errc::closed);
                }
                return;
            }
        }
        if (!pool.enter_waiting()) {
            kind::template fail_later<value_type>(std::move(handler), pool.executor,
                                                  errc::pool_overloaded);
            return;
        }
        async_semaphore& queue = (key != nullptr && !turn) ? hold.turn() : pool.slots;
        queue.async_acquire(pool_admission<Kind, handler_type, std::decay_t<F>>{
            state, std::move(count), std::move(handler), std::move(f), std::move(hold),
            std::move(turn)});
    }
};

} // namespace tame::detail

// Every associated property of a waiting submission is its caller's handler's.
template <template <class, class> class Associator, template <class> class Kind, class Handler,
          class F, class Default>
struct boost::asio::associator<Associator, tame::detail::pool_admission<Kind, Handler, F>, Default>
    : tame::detail::inner_associator<Associator, tame::detail::pool_admission<Kind, Handler, F>,
                                     Handler, Default> {
};
