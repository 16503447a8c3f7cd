#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/intrusive_list.hpp>
#include <tame/detail/recycling_allocator.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

namespace tame::detail {

/// A coroutine task of a task_pool, as its lane knows it: the signal in the
/// task's cancellation slot, and the task's place among the lane's running tasks.
///
/// Shared by the task and whoever may still cancel it, under the lane's mutex.
struct pool_task_record : intrusive_list_node {
    explicit pool_task_record(std::uint64_t epoch) noexcept : epoch{epoch} {}

    asio::cancellation_signal signal;
    /// cancel_all() calls made before the task was: later ones reach it.
    const std::uint64_t epoch;

    // Guarded by the lane's mutex.
    unsigned refs = 2; // the task, and its starter until it has linked the record
    bool linked = false;
    bool finished = false;

    // Touched only on the lane's strand.
    bool started = false;        // its coroutine has begun
    bool cancel_pending = false; // cancelled before that: it must not begin
    bool cancelled = false;      // sent a cancellation at all
    std::uint64_t swept_epoch = 0;
};

/// One strand of a task_pool and the coroutine tasks that run on it.
///
/// The pool cancels tasks on their own strand, since a cancellation slot may
/// only be used there: a sweep posted to the lane emits into each task's signal.
/// The mutex serialises the few steps that happen elsewhere: linking a task as
/// it starts, and references taken by cancellers.
///
/// A task's coroutine must not be cancelled before it first runs (Asio 1.81's
/// co_spawn would then throw out of io_context::run()), so a task cancelled that
/// early is only marked, and its start throws operation_aborted instead.
class pool_lane {
  public:
    explicit pool_lane(asio::any_io_executor strand)
        : strand_{std::move(strand)}, io_strand_{strand_.target<io_strand>()}
    {
    }

    pool_lane(const pool_lane&) = delete;
    pool_lane& operator=(const pool_lane&) = delete;

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
    static pool_task_record* make_record(std::uint64_t epoch)
    {
        return new (record_cache::allocate()) pool_task_record{epoch};
    }

    /// The starter's last step, once co_spawn has returned: the task joins the
    /// lane's running tasks (unless it has already ended). Returns the epoch of
    /// a sweep that ran without it and that it must still receive, or 0.
    std::uint64_t link(pool_task_record& task) noexcept
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
    /// cancelled before, and must not begin.
    static bool begin(pool_task_record& task) noexcept
    {
        task.started = true;
        return !task.cancel_pending;
    }

    /// On the strand (or as its io_context is destroyed): the task has ended.
    void finish(pool_task_record& task) noexcept
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
        std::vector<pool_task_record*> targets;
        {
            std::lock_guard lock{mutex_};
            if (epoch > swept_epoch_) {
                swept_epoch_ = epoch;
            }
            running_.for_each([&](pool_task_record& task) {
                if (task.epoch < epoch && task.swept_epoch < epoch) {
                    task.swept_epoch = epoch;
                    ++task.refs;
                    targets.push_back(&task);
                }
            });
        }
        // Emitted outside the lock, each task kept alive by its reference: an
        // emission may complete an operation inline and end a task.
        for (pool_task_record* task : targets) {
            cancel(*task, asio::cancellation_type::terminal);
        }
        for (pool_task_record* task : targets) {
            release(*task);
        }
    }

    /// On the strand: cancels one task, held by the caller's reference.
    ///
    /// A coroutine accepts only terminal cancellation unless it widens its own
    /// filter (co_spawn's default), so only terminal cancellation marks the task
    /// as cancelled, or stops it before it has begun; other types are passed on
    /// for a task that asked for them.
    static void cancel(pool_task_record& task, asio::cancellation_type type)
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
    bool retain(pool_task_record& task) noexcept
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
        reference(pool_lane& lane, pool_task_record& task) noexcept : lane_{&lane}, task_{&task} {}
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
        pool_task_record& task() const noexcept { return *task_; }

      private:
        pool_lane* lane_;
        pool_task_record* task_;
    };

    /// Gives back a reference taken by retain() or sweep().
    void release(pool_task_record& task) noexcept
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
    using record_cache = block_free_list<sizeof(pool_task_record), 512>;

    static void destroy(pool_task_record& task) noexcept
    {
        task.~pool_task_record();
        record_cache::deallocate(&task);
    }

    std::mutex mutex_;
    intrusive_list<pool_task_record> running_;
    using io_strand = asio::strand<asio::io_context::executor_type>;

    std::uint64_t swept_epoch_ = 0; // the latest sweep that ran
    const asio::any_io_executor strand_;
    const io_strand* const io_strand_; // inside strand_, which never moves; or null
};

} // namespace tame::detail
