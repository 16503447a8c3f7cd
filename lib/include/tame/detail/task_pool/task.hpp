#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/task_lane.hpp>
#include <tame/detail/task_pool/keys.hpp>
#include <tame/detail/task_pool/state.hpp>
#include <tame/permit.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>

#include <exception>
#include <memory>
#include <type_traits>
#include <utility>

namespace tame::detail {

/// What a pool task returns: `T` for a coroutine (`awaitable<T>`) or for a
/// plain callable returning `T`.
template <class R>
struct pool_result {
    using type = R;
    static constexpr bool coroutine = false;
};

template <class T, class Executor>
struct pool_result<asio::awaitable<T, Executor>> {
    using type = T;
    static constexpr bool coroutine = true;
};

template <class F>
using pool_result_of = pool_result<std::invoke_result_t<std::decay_t<F>&>>;

/// A running task's hold on the pool: its slot, its key's turn, its count in
/// `tasks`, and its lane record. Ended once: by the task, or by its destruction
/// when the task never ran (its io_context was destroyed).
class pool_ticket {
  public:
    pool_ticket(std::shared_ptr<task_pool_state> state, pool_count count, permit slot, permit turn,
                pool_keys::hold key, task_lane& lane, lane_task* task) noexcept
        : state_{std::move(state)}, count_{std::move(count)}, slot_{std::move(slot)},
          turn_{std::move(turn)}, key_{std::move(key)}, lane_{&lane}, task_{task}
    {
    }

    pool_ticket(pool_ticket&&) noexcept = default;
    pool_ticket& operator=(pool_ticket&&) = delete;

    /// Destroyed before the task ended (its io_context was destroyed with the
    /// task in it, or starting it threw): it counts as cancelled.
    ~pool_ticket()
    {
        if (state_) {
            abandon();
        }
    }

    lane_task* task() const noexcept { return task_; }

    /// The task ended with `e`. Its slot goes back only after the counters are
    /// updated, so that `running` never exceeds the capacity.
    void end(const std::exception_ptr& e, bool report) noexcept
    {
        const bool cancelled = task_ != nullptr && task_->cancelled;
        state_->task_ended(e, cancelled, report);
        give_back();
    }

  private:
    void abandon() noexcept
    {
        state_->running.fetch_sub(1, std::memory_order_relaxed);
        state_->cancelled.fetch_add(1, std::memory_order_relaxed);
        give_back();
    }

    void give_back() noexcept
    {
        auto state = std::move(state_);
        slot_.release();
        turn_.release();
        key_.reset();
        if (task_ != nullptr) {
            lane_->finish(*task_);
        }
        count_.reset(); // last: a drain may complete now
    }

    std::shared_ptr<task_pool_state> state_; // null once ended
    pool_count count_;
    permit slot_;
    permit turn_;
    pool_keys::hold key_;
    task_lane* lane_;
    lane_task* task_; // null for a plain callable
};

/// The completion handler of a coroutine task's co_spawn: gives the task's
/// cancellation slot (its lane record's signal).
///
/// It names no executor: co_spawn then runs it on the task's strand, where the
/// coroutine ends, and delivers the cancellation straight into the coroutine
/// (with an executor of its own named, co_spawn would store a copy of it, and
/// dispatch each emission through it).
template <class Ending, class... Result>
class pool_coroutine_end {
  public:
    using cancellation_slot_type = asio::cancellation_slot;

    pool_coroutine_end(pool_ticket ticket, Ending ending) noexcept
        : ticket_{std::move(ticket)}, ending_{std::move(ending)}
    {
    }

    cancellation_slot_type get_cancellation_slot() const noexcept
    {
        return ticket_.task()->signal.slot();
    }

    void operator()(std::exception_ptr e, Result... result)
    {
        const bool inline_start = initiating_task == ticket_.task();
        ticket_.end(e, Ending::reports_exceptions);
        ending_.finished(inline_start, std::move(e), std::move(result)...);
    }

  private:
    pool_ticket ticket_;
    Ending ending_;
};

/// A plain callable as a pool task: posted to its strand, where it runs to its end.
template <class F, class Starter, class Ending>
class pool_plain_task {
  public:
    pool_plain_task(F f, Starter starter, Ending ending, pool_ticket ticket) noexcept
        : f_{std::move(f)}, starter_{std::move(starter)}, ending_{std::move(ending)},
          ticket_{std::move(ticket)}
    {
    }

    /// Runs `f` first: for a plain callable, starting is running, and the
    /// submitter hears of it once that is done.
    void operator()()
    {
        using result_type = std::invoke_result_t<F&>;
        std::exception_ptr e;
        if constexpr (std::is_void_v<result_type>) {
            try {
                f_();
            } catch (...) {
                e = std::current_exception();
            }
            ticket_.end(e, Ending::reports_exceptions);
            starter_.started(false);
            ending_.finished(false, std::move(e));
        } else {
            result_type result{};
            try {
                result = f_();
            } catch (...) {
                e = std::current_exception();
            }
            ticket_.end(e, Ending::reports_exceptions);
            starter_.started(false);
            ending_.finished(false, std::move(e), std::move(result));
        }
    }

  private:
    F f_;
    Starter starter_;
    Ending ending_;
    pool_ticket ticket_;
};

/// The Ending of a task nobody waits for (try_submit, async_submit): its
/// exception goes to on_exception.
struct no_ending {
    static constexpr bool reports_exceptions = true;
    template <class... Args>
    void finished(bool, Args&&...) noexcept
    {
    }
};

} // namespace tame::detail
