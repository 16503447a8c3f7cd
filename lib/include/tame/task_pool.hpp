#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/graceful_shutdown.hpp>
#include <tame/detail/task_pool/admission.hpp>
#include <tame/detail/task_pool/launch.hpp>
#include <tame/detail/task_pool/state.hpp>
#include <tame/detail/task_pool/task.hpp>
#include <tame/error.hpp>
#include <tame/keyed.hpp>
#include <tame/task_pool_options.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/execution_context.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <exception>
#include <memory>
#include <type_traits>
#include <utility>

namespace tame {

/// Work a task_pool runs: a function object called once, with no arguments,
/// on the task's strand. If it returns `asio::awaitable<T>`, the task is that
/// coroutine; otherwise the call itself is the task and its result the task's
/// value. Like a task_factory, it must move without throwing. A task's value
/// type must be default-constructible (as co_spawn requires): a failed task
/// delivers `T{}` beside its exception.
template <class F>
concept pool_task = std::is_nothrow_move_constructible_v<std::decay_t<F>> &&
    std::invocable<std::add_lvalue_reference_t<std::decay_t<F>>>;

/// The value type of a pool task: `T` for `awaitable<T>`, else what `f()` returns.
template <pool_task F>
using pool_task_value_t = typename detail::pool_result_of<F>::type;

namespace detail {
template <class T>
struct run_signature {
    using type = void(std::exception_ptr, T);
};
template <>
struct run_signature<void> {
    using type = void(std::exception_ptr);
};
} // namespace detail

/// The completion signature of async_run() for a task of value type `T`:
/// `void(std::exception_ptr, T)`, or `void(std::exception_ptr)` when T is void.
template <class T>
using run_signature = typename detail::run_signature<T>::type;

/// A managed pool of tasks on Asio strands: Go's `ants`, with results,
/// cancellation of running tasks and per-key ordering.
///
/// At most `capacity` tasks run at once; further submitters wait for a slot
/// in FIFO order (backpressure), up to `max_waiting` of them, beyond which they
/// are refused with errc::pool_overloaded. An exception that escapes a task
/// goes to `on_exception` and the pool goes on. Tasks run on strands the pool
/// makes up front, in turn, so that a task's own handlers never run
/// concurrently and the pool can cancel a running task from any thread: each
/// coroutine task carries a cancellation slot tied to the pool, which
/// cancel_all() emits into on the task's own strand.
///
/// Ending: close() refuses new work; async_drain() waits for the work
/// admitted; cancel_all() stops what runs. async_shutdown() does all three, in
/// the order Go's http.Server.Shutdown and ants' ReleaseTimeout do them.
///
/// **Destroying a pool** closes it and cancels its running tasks (as
/// cancel_all() does) without waiting: they end on their own, and waiting
/// submitters complete with errc::closed. As for any tame object with waiters,
/// destroy the pool before the execution contexts it uses.
///
/// Thread safety: every member may be called from any thread.
class task_pool {
  public:
    using executor_type = asio::any_io_executor;

    /// A pool whose tasks run on strands of `ex`. Throws std::invalid_argument
    /// when the capacity is 0 or above async_semaphore::max_capacity.
    explicit task_pool(const executor_type& ex, const task_pool_options& options = {})
        : state_{std::make_shared<detail::task_pool_state>(ex, options)}
    {
    }

    /// A pool whose tasks run on `context`.
    template <class ExecutionContext>
    requires std::is_convertible_v<ExecutionContext&, asio::execution_context&>
    explicit task_pool(ExecutionContext& context, const task_pool_options& options = {})
        : task_pool{context.get_executor(), options}
    {
    }

    task_pool(const task_pool&) = delete;
    task_pool& operator=(const task_pool&) = delete;

    /// Closes the pool and cancels its tasks, without waiting (see above).
    ~task_pool()
    {
        state_->close();
        state_->cancel_all();
    }

    /// The executor whose strands run the tasks; also that of handlers that
    /// name none of their own.
    executor_type get_executor() const noexcept { return state_->executor; }

    /// Runs `f` as a task once a slot is free; Go's `pool.Submit(f)`.
    ///
    /// Completion signature: `void(error_code)`, delivered as the task starts
    /// on its strand (a plain callable: once it has run), dispatched to the
    /// handler's executor, so a handler of the pool's own executor runs right
    /// there; or when the submission fails. Success means the task was admitted
    /// and started: a cancel_all() that reaches it before its first step still
    /// stops it (it then counts as cancelled).
    /// What the task returns is dropped; an exception goes to on_exception.
    ///
    /// Errors, with `f` never called: errc::closed after close();
    /// errc::pool_overloaded when the pool is full and `max_waiting`
    /// submitters already wait; asio::error::operation_aborted when the wait
    /// is cancelled.
    ///
    /// **Cancellation** of the wait for a slot: terminal, partial and total,
    /// through the handler's cancellation slot (so cancel_after() bounds the
    /// wait). Once started, the task belongs to the pool.
    ///
    /// The handler runs on its associated executor (by default the pool's),
    /// never inside this call.
    template <pool_task F, class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, void(error_code)>
    auto async_submit(F&& f, Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return asio::async_initiate<Token, void(error_code)>(
            detail::initiate_pool_task<detail::submit_kind>{state_}, token, std::forward<F>(f));
    }

    /// async_submit() with an ordering key: after the tasks submitted earlier
    /// with the same key have ended. Waiting for the key's turn is waiting (it
    /// counts against `max_waiting`, and is cancellable).
    template <pool_task F, class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, void(error_code)>
    auto async_submit(keyed key, F&& f,
                      Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return asio::async_initiate<Token, void(error_code)>(
            detail::initiate_pool_task<detail::submit_kind>{state_}, token, std::forward<F>(f),
            key.key());
    }

    /// Starts `f` as a task if a slot (and its key's turn) is free now; never
    /// waits, never overtakes a waiting submitter. Returns errc::closed or
    /// errc::pool_overloaded (counted as rejected) when it does not start it.
    template <pool_task F>
    error_code try_submit(F&& f)
    {
        return detail::try_start_pool_task(*state_, std::forward<F>(f), nullptr);
    }

    /// try_submit() with an ordering key.
    template <pool_task F>
    error_code try_submit(const keyed& key, F&& f)
    {
        return detail::try_start_pool_task(*state_, std::forward<F>(f), &key.key());
    }

    /// Runs `f` as a task and delivers its outcome: `void(std::exception_ptr,
    /// T)` (or `void(std::exception_ptr)` when T is void), as co_spawn does. With
    /// use_awaitable, `T v = co_await pool.async_run(f, use_awaitable);` returns
    /// the value or rethrows. The exception goes to the caller, not to
    /// on_exception; a refused or cancelled wait arrives as a
    /// boost::system::system_error (errc::closed, errc::pool_overloaded,
    /// operation_aborted).
    ///
    /// **Cancellation**: while it waits for a slot, as async_submit(); once the
    /// task runs, the cancellation is passed on to the task, on its strand, and
    /// the run completes when the task ends. A coroutine task honours terminal
    /// cancellation (co_spawn's default filter); partial and total reach it only
    /// if it widens its filter with `this_coro::reset_cancellation_state`.
    template <pool_task F, class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, run_signature<pool_task_value_t<F>>>
    auto async_run(F&& f, Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return asio::async_initiate<Token, run_signature<pool_task_value_t<F>>>(
            detail::initiate_pool_task<detail::run_kind>{state_}, token, std::forward<F>(f));
    }

    /// async_run() with an ordering key.
    template <pool_task F, class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, run_signature<pool_task_value_t<F>>>
    auto async_run(keyed key, F&& f,
                   Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return asio::async_initiate<Token, run_signature<pool_task_value_t<F>>>(
            detail::initiate_pool_task<detail::run_kind>{state_}, token, std::forward<F>(f),
            key.key());
    }

    /// Changes the capacity, under load too (ants' Tune). Growing admits
    /// waiting submitters at once; shrinking lets running tasks finish, and
    /// admits new ones only below the new capacity. Throws
    /// std::invalid_argument unless 1 <= capacity <= async_semaphore::max_capacity.
    void resize(std::size_t capacity) { state_->slots.set_capacity(capacity); }

    /// The most tasks that run at once.
    std::size_t capacity() const noexcept { return state_->slots.capacity(); }

    /// Tasks started and not yet ended.
    std::size_t running() const noexcept { return state_->running.load(std::memory_order_relaxed); }

    /// The pool's counters now.
    task_pool_stats stats() const noexcept { return state_->stats(); }

    /// Refuses new work with errc::closed, and fails the submitters that
    /// wait, including one granted a slot whose task has not started yet:
    /// nothing starts after close(). Running tasks go on; async_drain() waits
    /// for them. For good.
    void close() noexcept { state_->close(); }

    /// Whether close() was called.
    bool is_closed() const noexcept { return state_->is_closed(); }

    /// Waits until no task runs and no submission waits. Call close() first
    /// (or use async_shutdown()) unless the work is known to end.
    ///
    /// Completion signature: `void(error_code)`. **Cancellation**: terminal,
    /// partial and total, through the handler's slot; the wait ends with
    /// operation_aborted and the tasks go on. So the ants ReleaseTimeout
    /// pattern is `with_timeout(pool.async_drain(use_awaitable), d)`, then
    /// cancel_all() if it timed out.
    template <class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, void(error_code)>
    auto async_drain(Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return state_->tasks.async_wait(std::forward<Token>(token));
    }

    /// Cancels every task running now, each through its cancellation slot on
    /// its own strand (terminal): its pending await completes with
    /// operation_aborted. A task that has not begun yet ends without running.
    /// Plain callables cannot be interrupted; they run to their end. Tasks
    /// started later are not affected, and the pool goes on serving.
    void cancel_all() { state_->cancel_all(); }

    /// The whole graceful stop in one call: close(), wait up to `grace` for
    /// the work to end, then cancel_all() and wait for the rest. The grace
    /// period is measured by the pool's time_source (task_pool_options::time).
    ///
    /// Completion signature: `void(std::size_t)`: how many tasks were still
    /// running when the grace period ended and had to be cancelled (0 if all
    /// ended in time). A second call joins the shutdown under way (its own
    /// grace period is ignored) and completes with the same count, as does one
    /// made after the end.
    ///
    /// **Cancellation**, terminal or partial, ends the grace period at once;
    /// the shutdown still waits for the cancelled tasks. Total cancellation is
    /// ignored: it allows no side effects, and cancelling tasks is one. A grace
    /// period above a century (say, `hours::max()`) waits that long: for ever,
    /// in practice.
    ///
    /// The handler runs on its associated executor (by default the pool's),
    /// never inside this call. Safe on any executor: the shutdown's steps run
    /// on a strand of their own.
    template <class Rep, class Period,
              class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, void(std::size_t)>
    auto async_shutdown(std::chrono::duration<Rep, Period> grace,
                        Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return asio::async_initiate<Token, void(std::size_t)>(initiate_shutdown{state_}, token,
                                                              detail::clamp_grace(grace));
    }

  private:
    struct initiate_shutdown {
        std::shared_ptr<detail::task_pool_state> state;

        executor_type get_executor() const noexcept { return state->executor; }

        template <class Handler>
        void operator()(Handler&& handler, time_source::duration grace) const
        {
            state->shutdown.join(
                state, grace,
                asio::any_completion_handler<void(std::size_t)>{std::forward<Handler>(handler)},
                state->executor);
        }
    };

    std::shared_ptr<detail::task_pool_state> state_;
};

} // namespace tame
