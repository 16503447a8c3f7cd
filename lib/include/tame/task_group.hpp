#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/task_group/join.hpp>
#include <tame/detail/task_group/spawn.hpp>
#include <tame/detail/task_group/state.hpp>
#include <tame/error.hpp>
#include <tame/on_failure.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <concepts>
#include <cstddef>
#include <exception>
#include <memory>
#include <type_traits>
#include <utility>

namespace tame {

namespace detail {
/// What calling a function object of type `F`, as a task_group or task_pool
/// holds it, returns.
template <class F>
using factory_result_t = std::invoke_result_t<std::decay_t<F>&>;
} // namespace detail

/// A function object that starts a task: called once, with no arguments, it
/// returns the task's coroutine. It must move without throwing (lambdas do,
/// unless they capture something that does not): a spawn moves it along its
/// steps, and a throw halfway could not be told apart from a task not started.
template <class F>
concept task_factory = std::is_nothrow_move_constructible_v<std::decay_t<F>> &&
    std::is_same_v<detail::factory_result_t<F>, asio::awaitable<void>>;

/// Structured concurrency for coroutines: Go's errgroup with SetLimit.
///
/// Spawn tasks into the group, then join it: the join completes when every task
/// has ended and reports the first exception that escaped one. That first
/// failure cancels the others (their pending awaits complete with
/// `asio::error::operation_aborted`) and the group starts no more tasks; so
/// does cancel(). A group made with on_failure::keep_going is a supervisor
/// instead: a failure cancels nothing, and only cancel() stops the group.
/// with_task_group() runs a group that is always joined. With a limit, at most `limit` tasks run at
/// once and async_spawn() waits for a free slot: backpressure for whoever spawns.
///
/// Tasks run on strands of the group's executor, so the group can cancel them
/// safely from any thread, and each carries a cancellation slot tied to the
/// group. The group makes its strands up front (twice the hardware threads, or
/// the limit if smaller) and tasks take turns on them: a task's handlers never
/// run concurrently, and tasks on different strands run in parallel. A group
/// whose executor is a strand runs every task on it. A group that has been cancelled stays
/// cancelled: use a new one for new work.
///
/// **Destroying a group** with tasks in flight cancels them (as cancel() does)
/// and does not wait: they end on their own as their awaits complete, and their
/// failures go nowhere (but to a join still pending, which completes when the
/// last of them ends). Spawns still waiting for a slot complete with
/// `asio::error::operation_aborted`. Like any tame object with waiters, the
/// group must be destroyed before the execution contexts of its waiters
/// (declare the io_context first).
///
/// Thread safety: every member may be called from any thread.
class task_group {
  public:
    using executor_type = asio::any_io_executor;

    /// A group whose tasks run on strands of `ex`, at most `limit` at once (0: no
    /// limit), that reacts to a failed task as `policy` says. Throws
    /// std::invalid_argument when `limit` is above async_semaphore::max_capacity.
    explicit task_group(const executor_type& ex, std::size_t limit = 0,
                        on_failure policy = on_failure::cancel_group)
        : state_{std::make_shared<detail::task_group_state>(ex, limit, policy)}
    {
    }

    /// A group whose tasks run on `context`.
    template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
    explicit task_group(ExecutionContext& context, std::size_t limit = 0,
                        on_failure policy = on_failure::cancel_group)
        : task_group{context.get_executor(), limit, policy}
    {
    }

    task_group(const task_group&) = delete;
    task_group& operator=(const task_group&) = delete;

    /// Cancels the tasks in flight and lets them end on their own (see above).
    ~task_group()
    {
        // Closing the slots takes the waiting spawns (which hold the state) out
        // of their queue now.
        state_->cancel_all();
    }

    /// The executor whose strands run the tasks; also that of handlers that name
    /// none of their own.
    executor_type get_executor() const noexcept { return state_->executor; }

    /// Starts `f()` as a task of the group, once a slot is free.
    ///
    /// Completion signature: `void(error_code)`, delivered once the task has
    /// been started (its coroutine is scheduled on its strand), or when the
    /// spawn fails. `f()` is called on the task's strand, so an exception it
    /// throws is the task's failure.
    ///
    /// Errors: `asio::error::operation_aborted` when the spawn is cancelled
    /// while it waits, or when the group has been cancelled (by cancel(), a
    /// failed task, a cancelled join or the group's destruction): `f` is then
    /// never called.
    ///
    /// **Cancellation**: terminal, partial and total, through the handler's
    /// cancellation slot, while it waits for a slot; cancelling a spawn leaves
    /// the group and its tasks alone.
    ///
    /// The handler runs on its associated executor (by default the group's),
    /// never inside this call. A join waits for spawns that are still waiting.
    template <task_factory F, class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, void(error_code)>
    auto async_spawn(F&& f, Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return asio::async_compose<Token, void(error_code)>(
            detail::spawn_op<std::decay_t<F>>{state_, std::forward<F>(f)}, token, state_->executor);
    }

    /// The coroutine way to spawn: `co_await group.spawn(f);`.
    ///
    /// Starts the task without suspending the caller when a slot is free;
    /// otherwise it waits as async_spawn() does and throws its errors as
    /// boost::system::system_error (operation_aborted once the group is
    /// cancelled). Cancellation reaches the wait through the calling
    /// coroutine's cancellation state; a caller already cancelled throws at the
    /// `co_await`, before anything has started. Await it at once: it refers to
    /// the group.
    template <task_factory F>
    asio::awaitable<void> spawn(F f)
    {
        // A coroutine (rather than a ready awaitable built here, as acquire() is)
        // so that nothing starts until the caller actually awaits it.
        if (!try_spawn(std::move(f))) { // moves from `f` only on success
            co_await async_spawn(std::move(f), asio::use_awaitable);
        }
    }

    /// Starts `f()` as a task at once if a slot is free and the group has not
    /// been cancelled; never waits. True if the task was started.
    ///
    /// Slots go to waiting spawns first: try_spawn() never jumps their queue.
    ///
    /// Like co_spawn, this may run the task's first steps (up to its first
    /// suspension) before it returns, when the calling thread is already inside
    /// the task's strand: do not hold a lock the task needs across the call.
    template <task_factory F>
    bool try_spawn(F&& f)
    {
        return state_->try_start(std::forward<F>(f));
    }

    /// Waits until every task (and every spawn still waiting for a slot) has
    /// ended.
    ///
    /// Completion signature: `void(std::exception_ptr)`: the first exception that
    /// escaped a task, or null. In a coroutine, `co_await
    /// group.async_join(asio::use_awaitable)` rethrows it. Failures that follow
    /// the first (usually the others' operation_aborted) are not reported.
    /// With no task in flight it completes at once, through the executor.
    ///
    /// **Cancellation**: terminal or partial, through the handler's cancellation
    /// slot, cancels the whole group, and the join still waits for the tasks to
    /// end: nothing is left running. So `with_timeout(group.async_join(...), d)`
    /// stops the work at the deadline. Total cancellation (no side effects
    /// allowed) cannot be honoured and is ignored.
    ///
    /// The handler runs on its associated executor (by default the group's),
    /// never inside this call. Several joins may wait at once.
    template <class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, void(std::exception_ptr)>
    auto async_join(Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return asio::async_initiate<Token, void(std::exception_ptr)>(initiate_join{state_}, token);
    }

    /// Cancels every running task through its cancellation slot, fails the
    /// spawns waiting for a slot, and refuses new ones. It is not a failure: a
    /// join reports what the tasks end with (usually the operation_aborted
    /// that their cancelled awaits throw, unless they catch it).
    void cancel() { state_->cancel_all(); }

    /// True once the group has been cancelled: by cancel(), a cancelled join,
    /// or (on_failure::cancel_group) a failed task.
    bool cancelled() const noexcept { return state_->is_cancelled(); }

    /// A source emitted when the group is cancelled, for work outside its tasks
    /// that must stop with them: `group.cancellation().bind(token)`.
    /// with_task_group() binds its body to it.
    cancel_source cancellation() const noexcept { return state_->cancel; }

    /// What the group does when a task fails.
    on_failure failure_policy() const noexcept { return state_->policy; }

    /// Tasks started and not yet ended.
    std::size_t running() const noexcept { return state_->running.load(std::memory_order_relaxed); }

    /// The most tasks that run at once; 0 when there is no limit.
    std::size_t limit() const noexcept { return state_->limit; }

  private:
    struct initiate_join {
        std::shared_ptr<detail::task_group_state> state;

        executor_type get_executor() const noexcept { return state->executor; }

        template <class Handler>
        void operator()(Handler&& handler) const
        {
            state->tasks.async_wait(detail::join_completion<std::decay_t<Handler>>{
                std::forward<Handler>(handler), state});
        }
    };

    std::shared_ptr<detail::task_group_state> state_;
};

} // namespace tame
