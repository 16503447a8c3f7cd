#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/intrusive_list.hpp>
#include <tame/detail/recycling_allocator.hpp>
#include <tame/detail/task_strands.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

// Cancelling coroutines that run on strands, from any thread: the one
// mechanism under task_group, task_pool and tame::http's connections.
//
// Asio 1.81 sets three traps for whoever cancels a co_spawned coroutine:
// its cancellation slot may only be emitted on the coroutine's strand; the
// signal must outlive the co_spawn operation; and a coroutine cancelled
// before its first step makes co_spawn throw out of io_context::run(). A
// lane_task holds the signal until the task and everyone who may cancel it
// are done with it; a task_lane emits it only on the strand, and only once
// the coroutine has begun; a cancellation that comes earlier is kept until
// then.

namespace tame::detail {

/// A coroutine task on a lane: the signal in the task's cancellation slot, and
/// its place among the lane's running tasks. Shared by the task and whoever
/// may still cancel it, under the lane's mutex.
struct lane_task : intrusive_list_node {
    explicit lane_task(std::uint64_t epoch) noexcept : epoch{epoch} {}

    asio::cancellation_signal signal;
    /// The lane set's cancel_all() calls made before the task was: later ones reach it.
    const std::uint64_t epoch;

    // Guarded by the lane's mutex.
    unsigned refs = 2; // the task, and its starter until it has linked the record
    bool linked = false;
    bool finished = false;

    // Touched only on the lane's strand.
    bool started = false;        // its coroutine has begun
    bool cancel_pending = false; // cancelled before that
    bool cancelled = false;      // sent a terminal cancellation at all
    std::uint64_t swept_epoch = 0;
};

/// One strand and the coroutine tasks that run on it.
///
/// Tasks are cancelled on their own strand, since a cancellation slot may only
/// be used there: a sweep posted to the lane emits into each task's signal. The
/// mutex serialises the few steps that happen elsewhere: linking a task as it
/// starts, and references taken by cancellers.
class task_lane {
  public:
    explicit task_lane(asio::any_io_executor strand)
        : strand_{std::move(strand)}, io_strand_{strand_.target<io_strand>()}
    {
    }

    task_lane(const task_lane&) = delete;
    task_lane& operator=(const task_lane&) = delete;

    const asio::any_io_executor& strand() const noexcept { return strand_; }

    /// Posts `f` to the strand; through its concrete type when it is an
    /// io_context's strand, which skips any_io_executor's property dance.
    template <class F>
    void post(F&& f) const
    {
        if (io_strand_ != nullptr) {
            asio::post(*io_strand_, std::forward<F>(f));
        } else {
            asio::post(strand_, std::forward<F>(f));
        }
    }

    /// A record for a task about to start, made before cancel_all() number `epoch + 1`.
    static lane_task* make_task(std::uint64_t epoch)
    {
        return new (task_cache::allocate()) lane_task{epoch};
    }

    /// The starter's last step, once co_spawn has returned: the task joins the
    /// lane's running tasks (unless it has already ended). Returns the epoch of
    /// a sweep that ran without it and that it must still receive, or 0.
    std::uint64_t link(lane_task& task) noexcept
    {
        std::uint64_t missed = 0;
        bool last = false;
        {
            std::lock_guard lock{mutex_};
            if (!task.finished) {
                running_.push_back(task);
                task.linked = true;
                if (task.epoch < swept_epoch_) {
                    missed = swept_epoch_;
                }
            }
            last = --task.refs == 0;
        }
        if (last) {
            destroy(task);
        }
        return missed;
    }

    /// On the strand, as the task's coroutine first runs: false if it was
    /// cancelled before (see lane_task_start for what happens then).
    static bool begin(lane_task& task) noexcept
    {
        task.started = true;
        return !task.cancel_pending;
    }

    /// On the strand (or as its io_context is destroyed): the task has ended.
    void finish(lane_task& task) noexcept
    {
        bool last = false;
        {
            std::lock_guard lock{mutex_};
            task.finished = true;
            if (task.linked) {
                running_.erase(task);
                task.linked = false;
            }
            last = --task.refs == 0;
        }
        if (last) {
            destroy(task);
        }
    }

    /// On the strand: cancels the running tasks made before cancel_all() number `epoch`.
    void sweep(std::uint64_t epoch)
    {
        std::vector<lane_task*> targets;
        {
            std::lock_guard lock{mutex_};
            if (epoch > swept_epoch_) {
                swept_epoch_ = epoch;
            }
            running_.for_each([&](lane_task& task) {
                if (task.epoch < epoch && task.swept_epoch < epoch) {
                    task.swept_epoch = epoch;
                    ++task.refs;
                    targets.push_back(&task);
                }
            });
        }
        // Emitted outside the lock, each task kept alive by its reference: an
        // emission may complete an operation inline and end a task.
        for (lane_task* task : targets) {
            cancel(*task, asio::cancellation_type::terminal);
        }
        for (lane_task* task : targets) {
            release(*task);
        }
    }

    /// On the strand: cancels one task, held by the caller (a reference, or
    /// the task's own coroutine).
    ///
    /// A coroutine accepts only terminal cancellation unless it widens its own
    /// filter (co_spawn's default), so only terminal cancellation marks the task
    /// as cancelled, or is kept for a task that has not begun; other types are
    /// passed on for a task that asked for them.
    static void cancel(lane_task& task, asio::cancellation_type type)
    {
        if (task.finished) {
            return;
        }
        const bool terminal =
            (type & asio::cancellation_type::terminal) != asio::cancellation_type::none;
        if (!task.started) {
            if (terminal) {
                task.cancelled = true;
                task.cancel_pending = true;
            }
            return;
        }
        if (terminal) {
            task.cancelled = true;
        }
        task.signal.emit(type);
    }

    /// Takes a reference to a task, unless it has ended; true if taken.
    bool retain(lane_task& task) noexcept
    {
        std::lock_guard lock{mutex_};
        if (task.finished) {
            return false;
        }
        ++task.refs;
        return true;
    }

    /// A reference taken by retain(), given back when destroyed: a posted
    /// cancellation destroyed unrun (its io_context went first) leaks nothing.
    class reference {
      public:
        reference(task_lane& lane, lane_task& task) noexcept : lane_{&lane}, task_{&task} {}
        reference(reference&& other) noexcept
            : lane_{other.lane_}, task_{std::exchange(other.task_, nullptr)}
        {
        }
        reference& operator=(reference&&) = delete;
        ~reference()
        {
            if (task_ != nullptr) {
                lane_->release(*task_);
            }
        }
        lane_task& task() const noexcept { return *task_; }

      private:
        task_lane* lane_;
        lane_task* task_;
    };

    /// Gives back a reference taken by retain() or sweep().
    void release(lane_task& task) noexcept
    {
        bool last = false;
        {
            std::lock_guard lock{mutex_};
            last = --task.refs == 0;
        }
        if (last) {
            destroy(task);
        }
    }

  private:
    /// A pool keeps up to `capacity` records in use, made on the submitting
    /// thread and freed on the task's: more than a small general cache holds.
    using task_cache = block_free_list<sizeof(lane_task), 512>;
    using io_strand = asio::strand<asio::io_context::executor_type>;

    static void destroy(lane_task& task) noexcept
    {
        task.~lane_task();
        task_cache::deallocate(&task);
    }

    std::mutex mutex_;
    intrusive_list<lane_task> running_;
    std::uint64_t swept_epoch_ = 0; // the latest sweep that ran
    const asio::any_io_executor strand_;
    const io_strand* const io_strand_; // inside strand_, which never moves; or null
};

/// The lanes of a task_group or task_pool: tasks take turns on them, and
/// cancel_all() reaches every task started before it, on its own strand.
///
/// The owner passes itself (a shared_ptr) to the calls that post, so that a
/// posted sweep keeps the lanes alive.
class task_lanes {
  public:
    /// Lanes on the strands make_task_strands() picks for `ex`, `count` and
    /// `limit`; one lane on `ex` itself when `single_threaded`.
    task_lanes(const asio::any_io_executor& ex, std::size_t count, std::size_t limit,
               bool single_threaded)
    {
        const std::vector<asio::any_io_executor> strands =
            single_threaded ? std::vector<asio::any_io_executor>{ex}
                            : make_task_strands(ex, count, limit);
        lanes_.reserve(strands.size());
        for (const auto& strand : strands) {
            lanes_.push_back(std::make_unique<task_lane>(strand));
        }
    }

    /// The lane the next task runs on, in turn.
    task_lane& next() noexcept
    {
        const std::size_t turn = next_.fetch_add(1, std::memory_order_relaxed);
        return *lanes_[turn % lanes_.size()];
    }

    /// The number of cancel_all() calls so far; a task started now records it.
    /// seq_cst, as the owner's "closed" flag must be: read the epoch, then the
    /// flag; set the flag, then cancel_all(). Either the starter sees the flag,
    /// or its task's epoch predates the cancel_all() that follows.
    std::uint64_t epoch() const noexcept { return epoch_.load(std::memory_order_seq_cst); }

    /// Cancels every task started before this call, each on its own strand.
    void cancel_all(const std::shared_ptr<const void>& owner)
    {
        const std::uint64_t epoch = epoch_.fetch_add(1, std::memory_order_seq_cst) + 1;
        for (const auto& lane : lanes_) {
            post_sweep(*lane, epoch, owner);
        }
    }

    /// The starter's last step (see task_lane::link).
    void link(task_lane& lane, lane_task& task, const std::shared_ptr<const void>& owner)
    {
        if (const std::uint64_t missed = lane.link(task)) {
            post_sweep(lane, missed, owner);
        }
    }

    /// Cancels one task from any thread, on its strand (a cancelled async_run, say).
    void cancel_one(task_lane& lane, lane_task& task, asio::cancellation_type type,
                    std::shared_ptr<const void> owner)
    {
        if (lane.retain(task)) {
            lane.post(posted_cancel{std::move(owner), task_lane::reference{lane, task}, type});
        }
    }

  private:
    /// cancel_one's work on the strand. The reference is declared after the
    /// owner, so that it is given back while the lane still exists.
    struct posted_cancel {
        std::shared_ptr<const void> owner;
        task_lane::reference held;
        asio::cancellation_type type;

        void operator()() const { task_lane::cancel(held.task(), type); }
    };

    static void post_sweep(task_lane& lane, std::uint64_t epoch,
                           const std::shared_ptr<const void>& owner)
    {
        lane.post([owner, &lane, epoch] { lane.sweep(epoch); });
    }

    std::vector<std::unique_ptr<task_lane>> lanes_;
    std::atomic<std::size_t> next_{0};
    std::atomic<std::uint64_t> epoch_{0};
};

/// What to do with a task whose cancellation came before its coroutine began.
enum class early_cancel {
    /// End it without running: its factory is not called, and it ends with
    /// operation_aborted (task_pool: the task was never the caller's).
    skip,
    /// Run it, and deliver the cancellation at its first suspension, as to any
    /// running task (task_group: a spawned task always runs).
    at_first_await,
};

/// The task an async_* call is starting on this thread right now, if any:
/// its handlers, when the task runs inline (co_spawn from inside the task's
/// strand runs it up to its first suspension), must be posted, not run in the
/// initiating call.
inline thread_local const void* initiating_task = nullptr;

/// Marks the task being started by an initiating function, for its scope.
class initiating_scope {
  public:
    initiating_scope(bool initiating, const void* task) noexcept : saved_{initiating_task}
    {
        if (initiating) {
            initiating_task = task;
        }
    }
    initiating_scope(const initiating_scope&) = delete;
    initiating_scope& operator=(const initiating_scope&) = delete;
    ~initiating_scope() { initiating_task = saved_; }

  private:
    const void* saved_;
};

/// The function co_spawn calls, on the task's strand, to begin a lane task:
/// tells `starter` (`started(bool in_initiation)`) the task has started, then
/// makes the coroutine, unless it was cancelled before and `Early` says to skip
/// it. With early_cancel::at_first_await it holds `owner`, which keeps the
/// lane alive for the cancellation it may have to post.
template <class Factory, class Starter, early_cancel Early>
class lane_task_start {
  public:
    using owner_type = std::conditional_t<Early == early_cancel::at_first_await,
                                          std::shared_ptr<const void>, std::nullptr_t>;

    lane_task_start(Factory factory, Starter starter, task_lane& lane, lane_task& task,
                    owner_type owner = {}) noexcept
        : factory_{std::move(factory)}, starter_{std::move(starter)}, lane_{&lane}, task_{&task},
          owner_{std::move(owner)}
    {
    }

    auto operator()()
    {
        starter_.started(initiating_task == task_);
        if (!task_lane::begin(*task_)) {
            if constexpr (Early == early_cancel::skip) {
                throw boost::system::system_error{asio::error::operation_aborted};
            } else if (lane_->retain(*task_)) {
                // Posted behind the coroutine's first step, which co_spawn runs
                // as soon as this returns.
                lane_->post([owner = owner_, held = task_lane::reference{*lane_, *task_}] {
                    task_lane::cancel(held.task(), asio::cancellation_type::terminal);
                });
            }
        }
        return factory_();
    }

  private:
    Factory factory_;
    Starter starter_;
    task_lane* lane_;
    lane_task* task_;
    [[no_unique_address]] owner_type owner_;
};

/// A starter for a task whose spawner has nothing to hear as it starts.
struct no_start {
    void started(bool) noexcept {}
};

/// The completion handler of a lane task's co_spawn, for a task whose end
/// needs only `End`, a `void(std::exception_ptr)` callable: it gives the
/// record's signal as the coroutine's cancellation slot, and finishes the
/// record before calling `End`. Destroyed uncalled (its io_context was
/// destroyed with the task in it), it finishes the record all the same.
///
/// It names no executor: co_spawn runs it on the task's strand, where the
/// coroutine ends, and delivers each emission straight into the coroutine.
template <class End>
class lane_task_end {
  public:
    using cancellation_slot_type = asio::cancellation_slot;

    lane_task_end(task_lane& lane, lane_task& task, End end) noexcept
        : lane_{&lane}, task_{&task}, end_{std::move(end)}
    {
    }

    lane_task_end(lane_task_end&& other) noexcept
        : lane_{other.lane_}, task_{std::exchange(other.task_, nullptr)}, end_{
                                                                              std::move(other.end_)}
    {
    }
    lane_task_end& operator=(lane_task_end&&) = delete;

    ~lane_task_end()
    {
        if (task_ != nullptr) {
            lane_->finish(*task_);
        }
    }

    cancellation_slot_type get_cancellation_slot() const noexcept { return task_->signal.slot(); }

    void operator()(std::exception_ptr e)
    {
        lane_->finish(*std::exchange(task_, nullptr));
        std::move(end_)(std::move(e));
    }

  private:
    task_lane* lane_;
    lane_task* task_;
    End end_;
};

/// Starts `factory()` (a coroutine) on `lane` as a task cancellable from any
/// thread, cancelled before its first step as `Early` says; `end(e)` runs on
/// the strand when it ends. `epoch` is the lane set's, read before the caller
/// checked that it may start. `link(lane, task)` is called once co_spawn has
/// returned (or thrown): task_lanes::link, or task_lane::link for a lane of
/// its own. Returns the task's record, which stays valid until it has ended.
template <early_cancel Early, class Factory, class End, class Link>
lane_task& spawn_on_lane(
    task_lane& lane, std::uint64_t epoch, Factory&& factory, End&& end, Link link,
    typename lane_task_start<std::decay_t<Factory>, no_start, Early>::owner_type owner = {})
{
    lane_task* task = task_lane::make_task(epoch);
    struct link_on_exit {
        Link& link;
        task_lane& lane;
        lane_task& task;
        ~link_on_exit() { link(lane, task); }
    } linking{link, lane, *task};
    using start_type = lane_task_start<std::decay_t<Factory>, no_start, Early>;
    asio::co_spawn(
        lane.strand(),
        start_type{std::forward<Factory>(factory), no_start{}, lane, *task, std::move(owner)},
        lane_task_end<std::decay_t<End>>{lane, *task, std::forward<End>(end)});
    return *task;
}

} // namespace tame::detail
