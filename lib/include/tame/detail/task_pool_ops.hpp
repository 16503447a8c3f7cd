#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/pool_keys.hpp>
#include <tame/detail/pool_lane.hpp>
#include <tame/detail/pool_task.hpp>
#include <tame/detail/signalled_handler.hpp>
#include <tame/detail/task_pool_state.hpp>
#include <tame/error.hpp>
#include <tame/permit.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/system/system_error.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace tame::detail {

/// True when `Handler` names no executor of its own: it completes on the pool's.
template <class Handler>
inline constexpr bool uses_pool_executor = requires
{
    typename asio::associated_executor<
        Handler, asio::any_io_executor>::asio_associated_executor_is_unspecialised;
};

/// A handler waiting to be completed from a pool task, with outstanding work
/// on its executor meanwhile. Completion is dispatched: it runs at once when
/// the task's thread may run it, as it may any handler of its executor, unless
/// that would be inside the initiating call (then it is posted).
///
/// A handler whose executor is the pool's (a use_awaitable coroutine on it,
/// say) is called in place, as in the specialisation below: dispatching it
/// through the type-erased executor would only cost two more allocations.
template <class Handler, bool = uses_pool_executor<Handler>>
class pending_completion {
  public:
    pending_completion(Handler handler, const asio::any_io_executor& pool_executor)
        : handler_{std::move(handler)}, pool_executor_{&pool_executor}
    {
        auto ex = asio::get_associated_executor(handler_, pool_executor);
        if constexpr (std::is_same_v<decltype(ex), asio::any_io_executor>) {
            if (ex == pool_executor) {
                return;
            }
        }
        work_.emplace(asio::prefer(std::move(ex), asio::execution::outstanding_work.tracked));
    }

    template <class... Args>
    void complete(bool in_initiation, Args&&... args)
    {
        if (!work_ && !in_initiation) {
            std::move(handler_)(std::forward<Args>(args)...);
            return;
        }
        auto bound = asio::append(std::move(handler_), std::forward<Args>(args)...);
        if (!work_) {
            asio::post(*pool_executor_, std::move(bound));
        } else if (in_initiation) {
            asio::post(*work_, std::move(bound));
        } else {
            asio::dispatch(*work_, std::move(bound));
        }
    }

  private:
    using work_executor = std::decay_t<decltype(asio::prefer(
        std::declval<asio::associated_executor_t<Handler, asio::any_io_executor>>(),
        asio::execution::outstanding_work.tracked))>;

    Handler handler_;
    const asio::any_io_executor* pool_executor_; // used only while the pool is alive
    std::optional<work_executor> work_;          // empty: the pool's own executor
};

/// The same for a handler of the pool's own executor, the common case: the task
/// that completes it runs on a strand of that executor, which therefore runs in
/// this thread, so dispatching means calling it; and the task's own place on
/// its strand is outstanding work there until then.
template <class Handler>
class pending_completion<Handler, true> {
  public:
    /// `pool_executor` is used only from inside the initiating call, while the
    /// pool is certainly alive.
    pending_completion(Handler handler, const asio::any_io_executor& pool_executor)
        : handler_{std::move(handler)}, pool_executor_{&pool_executor}
    {
    }

    template <class... Args>
    void complete(bool in_initiation, Args&&... args)
    {
        if (in_initiation) {
            asio::post(*pool_executor_,
                       asio::append(std::move(handler_), std::forward<Args>(args)...));
        } else {
            std::move(handler_)(std::forward<Args>(args)...);
        }
    }

  private:
    Handler handler_;
    const asio::any_io_executor* pool_executor_;
};

/// Lives in an async_run caller's cancellation slot once the task has started:
/// cancelling the run cancels the task, on its strand.
class pool_run_canceller {
  public:
    pool_run_canceller(std::shared_ptr<task_pool_state> state, pool_lane& lane,
                       pool_task_record& task) noexcept
        : state_{std::move(state)}, lane_{&lane}, task_{&task}
    {
    }

    pool_run_canceller(const pool_run_canceller&) = delete;
    pool_run_canceller& operator=(const pool_run_canceller&) = delete;

    ~pool_run_canceller() { lane_->release(*task_); }

    void operator()(asio::cancellation_type type) const
    {
        state_->cancel_one(*lane_, *task_, type);
    }

  private:
    std::shared_ptr<task_pool_state> state_;
    pool_lane* lane_;
    pool_task_record* task_; // a reference held until destroyed
};

/// The handler of an async_run (or async_shutdown), after its work: clears the
/// caller's slot (it holds the operation's canceller), then runs the caller's
/// handler. Destroyed uncalled (its io_context was destroyed), it clears the
/// slot too, so that no canceller outlives the operation in the caller's signal.
template <class Handler>
class run_completion {
  public:
    explicit run_completion(Handler handler) : handler_{std::move(handler)} {}

    run_completion(run_completion&& other) noexcept
        : handler_{std::move(other.handler_)}, armed_{std::exchange(other.armed_, false)}
    {
    }
    run_completion& operator=(run_completion&&) = delete;

    ~run_completion()
    {
        if (armed_) {
            clear_slot();
        }
    }

    template <class... Args>
    void operator()(Args&&... args)
    {
        armed_ = false;
        clear_slot();
        std::move(handler_)(std::forward<Args>(args)...);
    }

    const Handler& inner() const noexcept { return handler_; }

  private:
    void clear_slot() noexcept
    {
        auto slot = asio::get_associated_cancellation_slot(handler_);
        if (slot.is_connected()) {
            slot.clear();
        }
    }

    Handler handler_;
    bool armed_ = true;
};

} // namespace tame::detail

// Every associated property of a run's final handler is its caller's handler's.
template <template <class, class> class Associator, class Handler, class Default>
struct boost::asio::associator<Associator, tame::detail::run_completion<Handler>, Default>
    : tame::detail::inner_associator<Associator, tame::detail::run_completion<Handler>, Handler,
                                     Default> {
};

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
    static auto split(Handler&& handler, task_pool_state& state, pool_lane&, pool_task_record*)
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
    static auto split(Handler&& handler, task_pool_state& state, pool_lane& lane,
                      pool_task_record* task)
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
/// leaving them alone, when the pool has been
/// closed: a submission admitted before close() but started after it must not
/// start, or a shutdown's cancel_all() could miss it. The epoch is read before
/// that check, both seq_cst like close() and cancel_all(): either the check
/// sees the close, or the task's epoch predates the cancel_all() after it.
template <template <class> class Kind, class Handler, class F>
bool launch_pool_task(task_pool_state& state, Handler& handler, F& f, pool_count count, permit slot,
                      permit turn, pool_keys::hold key, bool in_initiation)
{
    using handler_type = std::decay_t<Handler>;
    using factory_type = std::decay_t<F>;
    using result = pool_result_of<factory_type>;
    using value_type = typename result::type;

    const std::uint64_t epoch = state.cancel_epoch.load(std::memory_order_seq_cst);
    if (state.is_closed()) {
        return false;
    }
    pool_lane& lane = state.next_lane();
    if constexpr (result::coroutine) {
        pool_task_record* task = pool_lane::make_record(epoch);
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
            pool_lane& lane;
            pool_task_record& task;
            ~link_on_exit() { state.link(lane, task); }
        } link{state, lane, *task};
        auto [starter, ending] =
            Kind<handler_type>::template split<value_type>(std::move(handler), state, lane, task);
        using start_type = pool_coroutine_start<factory_type, decltype(starter)>;
        using end_type =
            std::conditional_t<std::is_void_v<value_type>, pool_coroutine_end<decltype(ending)>,
                               pool_coroutine_end<decltype(ending), value_type>>;
        const initiating_scope scope{in_initiation, task};
        asio::co_spawn(lane.strand(), start_type{std::move(f), std::move(starter), *task},
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

} // namespace tame::detail

namespace tame::detail {

/// try_submit's "handler": nobody hears of the task.
struct no_handler {};

template <class Handler>
struct detached_kind {
    template <class T>
    static auto split(Handler&&, task_pool_state&, pool_lane&, pool_task_record*) noexcept
    {
        return std::pair{no_start{}, no_ending{}};
    }
};

} // namespace tame::detail
