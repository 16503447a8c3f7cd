#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/signalled_handler.hpp>
#include <tame/detail/task_pool/keys.hpp>
#include <tame/detail/task_pool/launch.hpp>
#include <tame/detail/task_pool/state.hpp>
#include <tame/detail/task_pool/task.hpp>
#include <tame/error.hpp>
#include <tame/permit.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>

#include <memory>
#include <string>
#include <type_traits>
#include <utility>

namespace tame::detail {

/// A submission that waits: for its key's turn (when keyed and the key is
/// busy), then for a slot. It is the handler of those acquires, with every
/// associated property of the caller's handler but its cancellation slot:
/// the caller's slot holds a cancellation_state whose own slot cancels the
/// waits. The state remembers a cancellation that came after a slot was
/// granted but before the grant reached the caller's executor, too late to
/// stop the wait: the submission is then refused with operation_aborted rather
/// than started as if its caller still wanted it (and, for async_run, out of
/// its caller's reach). Counted in `waiting` and in `tasks` until it is decided.
template <template <class> class Kind, class Handler, class F>
class pool_admission {
  public:
    using value_type = typename pool_result_of<F>::type;

    pool_admission(std::shared_ptr<task_pool_state> state, pool_count count, Handler handler, F f,
                   pool_keys::hold key, permit turn)
        : state_{std::move(state)}, count_{std::move(count)}, handler_{std::move(handler)},
          f_{std::move(f)}, key_{std::move(key)}, turn_{std::move(turn)},
          // Every type: a wait that has not ended can be given up whole.
          cancellation_{asio::get_associated_cancellation_slot(handler_),
                        asio::enable_total_cancellation(), pass_on}
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
        if (!ec && cancellation_.cancelled() != asio::cancellation_type::none) {
            granted.release(); // cancelled as it was granted: the slot goes to the next
            ec = asio::error::operation_aborted;
        }
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
        release_callers_slot();
        if (!launch_pool_task<Kind>(*state, handler_, f_, std::move(count_), std::move(granted),
                                    std::move(turn_), std::move(key_), false)) {
            // Admitted before close() and started after it: refused, as any
            // submission after close() is.
            state->rejected.fetch_add(1, std::memory_order_relaxed);
            Kind<Handler>::template fail<value_type>(std::move(handler_), errc::closed);
        }
    }

    const Handler& inner() const noexcept { return handler_; }

    /// The slot of the waits: the cancellation state's, not the caller's.
    asio::cancellation_slot waits_slot() const noexcept { return cancellation_.slot(); }

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
        release_callers_slot();
        Kind<Handler>::template fail<value_type>(std::move(handler_), ec);
    }

    /// Takes the cancellation state out of the caller's slot, where an
    /// async_run's canceller goes next. We run on the caller's executor, where
    /// the slot may be touched.
    void release_callers_slot()
    {
        auto slot = asio::get_associated_cancellation_slot(handler_);
        if (slot.is_connected()) {
            slot.clear();
        }
    }

    static constexpr asio::cancellation_type pass_on(asio::cancellation_type type) noexcept
    {
        return type;
    }

    std::shared_ptr<task_pool_state> state_; // null once moved from or decided
    pool_count count_;
    Handler handler_;
    F f_;
    pool_keys::hold key_;
    permit turn_;
    asio::cancellation_state cancellation_;
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

// Every associated property of a waiting submission is its caller's handler's,
// but its cancellation slot (see pool_admission).
template <template <class, class> class Associator, template <class> class Kind, class Handler,
          class F, class Default>
struct boost::asio::associator<Associator, tame::detail::pool_admission<Kind, Handler, F>, Default>
    : tame::detail::inner_associator<Associator, tame::detail::pool_admission<Kind, Handler, F>,
                                     Handler, Default> {
};

template <template <class> class Kind, class Handler, class F, class Slot>
struct boost::asio::associated_cancellation_slot<tame::detail::pool_admission<Kind, Handler, F>,
                                                 Slot> {
    using type = boost::asio::cancellation_slot;

    static type get(const tame::detail::pool_admission<Kind, Handler, F>& admission,
                    const Slot& = Slot()) noexcept
    {
        return admission.waits_slot();
    }
};
