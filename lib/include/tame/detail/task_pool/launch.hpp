#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/task_lane.hpp>
#include <tame/detail/task_pool/completion.hpp>
#include <tame/detail/task_pool/keys.hpp>
#include <tame/detail/task_pool/state.hpp>
#include <tame/detail/task_pool/task.hpp>
#include <tame/error.hpp>
#include <tame/permit.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/system_error.hpp>

#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

// Starting a pool task: what becomes of the caller's handler (the kinds), and
// the start itself on the next lane.

namespace tame::detail {

/// What async_submit does with its handler: completes it with success as the
/// task starts; the task's end goes to on_exception.
template <class Handler>
struct submit_kind {
    using signature = void(error_code);

    class starter {
      public:
        starter(Handler handler, const asio::any_io_executor& fallback)
            : completion_{std::move(handler), fallback}
        {
        }
        void started(bool in_initiation) { completion_.complete(in_initiation, error_code{}); }

      private:
        pending_completion<Handler> completion_;
    };

    template <class T>
    static auto split(Handler&& handler, task_pool_state& state, task_lane&, lane_task*)
    {
        return std::pair{starter{std::move(handler), state.executor}, no_ending{}};
    }

    template <class T>
    static void fail(Handler&& handler, error_code ec)
    {
        std::move(handler)(ec);
    }

    template <class T>
    static void fail_later(Handler&& handler, const asio::any_io_executor& ex, error_code ec)
    {
        asio::post(ex, asio::append(std::move(handler), ec));
    }
};

/// What async_run does with its handler: nothing as the task starts (but its
/// slot now cancels the task); the task's result or exception at its end.
template <class Handler>
struct run_kind {
    template <class T>
    class ending {
      public:
        static constexpr bool reports_exceptions = false;

        ending(Handler handler, const asio::any_io_executor& fallback)
            : completion_{run_completion<Handler>{std::move(handler)}, fallback}
        {
        }

        template <class... Result>
        void finished(bool in_initiation, std::exception_ptr e, Result&&... result)
        {
            completion_.complete(in_initiation, std::move(e), std::forward<Result>(result)...);
        }

      private:
        pending_completion<run_completion<Handler>> completion_;
    };

    template <class T>
    static auto split(Handler&& handler, task_pool_state& state, task_lane& lane, lane_task* task)
    {
        auto slot = asio::get_associated_cancellation_slot(handler);
        if (task != nullptr && slot.is_connected() && lane.retain(*task)) {
            slot.template emplace<pool_run_canceller>(state.shared_from_this(), lane, *task);
        }
        return std::pair{no_start{}, ending<T>{std::move(handler), state.executor}};
    }

    template <class T>
    static void fail(Handler&& handler, error_code ec)
    {
        auto e = std::make_exception_ptr(boost::system::system_error{ec});
        if constexpr (std::is_void_v<T>) {
            std::move(handler)(std::move(e));
        } else {
            std::move(handler)(std::move(e), T{});
        }
    }

    template <class T>
    static void fail_later(Handler&& handler, const asio::any_io_executor& ex, error_code ec)
    {
        auto e = std::make_exception_ptr(boost::system::system_error{ec});
        if constexpr (std::is_void_v<T>) {
            asio::post(ex, asio::append(std::move(handler), std::move(e)));
        } else {
            asio::post(ex, asio::append(std::move(handler), std::move(e), T{}));
        }
    }
};

/// Starts `f` as a task holding `slot` (and its key's `turn`), on the next lane.
/// `Kind` says what becomes of `handler`; `in_initiation`: called from inside
/// the async_* call itself, so that handlers must not run inline.
///
/// Moves from `handler` and `f` when it starts the task. Returns false,
/// leaving them alone, when the pool has been closed: a submission admitted
/// before close() but started after it must not start, or a shutdown's
/// cancel_all() could miss it. The lanes' epoch is read before that check (see
/// task_lanes::epoch()): either the check sees the close, or the task's epoch
/// predates the cancel_all() after it.
template <template <class> class Kind, class Handler, class F>
bool launch_pool_task(task_pool_state& state, Handler& handler, F& f, pool_count count, permit slot,
                      permit turn, pool_keys::hold key, bool in_initiation)
{
    using handler_type = std::decay_t<Handler>;
    using factory_type = std::decay_t<F>;
    using result = pool_result_of<factory_type>;
    using value_type = typename result::type;

    const std::uint64_t epoch = state.lanes.epoch();
    if (state.is_closed()) {
        return false;
    }
    task_lane& lane = state.lanes.next();
    if constexpr (result::coroutine) {
        lane_task* task = task_lane::make_task(epoch);
        state.task_started();
        pool_ticket ticket{state.shared_from_this(),
                           std::move(count),
                           std::move(slot),
                           std::move(turn),
                           std::move(key),
                           lane,
                           task};
        // The record is linked when co_spawn returns, or throws.
        struct link_on_exit {
            task_pool_state& state;
            task_lane& lane;
            lane_task& task;
            ~link_on_exit() { state.lanes.link(lane, task, state.shared_from_this()); }
        } link{state, lane, *task};
        auto [starter, ending] =
            Kind<handler_type>::template split<value_type>(std::move(handler), state, lane, task);
        using start_type = lane_task_start<factory_type, decltype(starter), early_cancel::skip>;
        using end_type =
            std::conditional_t<std::is_void_v<value_type>, pool_coroutine_end<decltype(ending)>,
                               pool_coroutine_end<decltype(ending), value_type>>;
        const initiating_scope scope{in_initiation, task};
        asio::co_spawn(lane.strand(), start_type{std::move(f), std::move(starter), lane, *task},
                       end_type{std::move(ticket), std::move(ending)});
    } else {
        state.task_started();
        pool_ticket ticket{state.shared_from_this(),
                           std::move(count),
                           std::move(slot),
                           std::move(turn),
                           std::move(key),
                           lane,
                           nullptr};
        auto [starter, ending] = Kind<handler_type>::template split<value_type>(
            std::move(handler), state, lane, nullptr);
        lane.post(pool_plain_task<factory_type, decltype(starter), decltype(ending)>{
            std::move(f), std::move(starter), std::move(ending), std::move(ticket)});
    }
    return true;
}

/// try_submit's "handler": nobody hears of the task.
struct no_handler {};

template <class Handler>
struct detached_kind {
    template <class T>
    static auto split(Handler&&, task_pool_state&, task_lane&, lane_task*) noexcept
    {
        return std::pair{no_start{}, no_ending{}};
    }
};

/// task_pool::try_submit: starts `given` as a task if a slot (and the turn of
/// `key`, when not null) is free now; never waits, never overtakes a waiting
/// submitter. errc::closed or errc::pool_overloaded, counted as rejected, when
/// it does not start it.
template <class F>
error_code try_start_pool_task(task_pool_state& pool, F&& given, const std::string* key)
{
    std::decay_t<F> f{std::forward<F>(given)}; // the pool's own copy: a caller's lvalue stays
    if (pool.is_closed()) {
        pool.rejected.fetch_add(1, std::memory_order_relaxed);
        return errc::closed;
    }
    pool_count count{pool.tasks}; // before the slot: see initiate_pool_task
    pool_keys::hold hold;
    permit turn;
    if (key != nullptr) {
        hold = pool.keys.join(*key);
        turn = hold.turn().try_acquire();
    }
    permit slot;
    if (key == nullptr || turn) {
        slot = pool.slots.try_acquire();
    }
    if (!slot) {
        pool.rejected.fetch_add(1, std::memory_order_relaxed);
        return errc::pool_overloaded;
    }
    no_handler none;
    if (!launch_pool_task<detached_kind>(pool, none, f, std::move(count), std::move(slot),
                                         std::move(turn), std::move(hold), true)) {
        pool.rejected.fetch_add(1, std::memory_order_relaxed);
        return errc::closed;
    }
    return {};
}

} // namespace tame::detail
