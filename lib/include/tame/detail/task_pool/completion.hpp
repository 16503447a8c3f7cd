#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/signalled_handler.hpp>
#include <tame/detail/task_lane.hpp>
#include <tame/detail/task_pool/state.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

// How a task_pool completes its callers' handlers: dispatched from the task's
// strand, with outstanding work meanwhile, and an async_run's cancellation
// passed on to its task.

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
    pool_run_canceller(std::shared_ptr<task_pool_state> state, task_lane& lane,
                       lane_task& task) noexcept
        : state_{std::move(state)}, lane_{&lane}, task_{&task}
    {
    }

    pool_run_canceller(const pool_run_canceller&) = delete;
    pool_run_canceller& operator=(const pool_run_canceller&) = delete;

    ~pool_run_canceller() { lane_->release(*task_); }

    void operator()(asio::cancellation_type type) const
    {
        state_->lanes.cancel_one(*lane_, *task_, type, state_);
    }

  private:
    std::shared_ptr<task_pool_state> state_;
    task_lane* lane_;
    lane_task* task_; // a reference held until destroyed
};

/// The handler of an async_run, after its work: clears the
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
