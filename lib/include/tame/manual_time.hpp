#pragma once

#include <tame/detail/config.hpp>
#include <tame/error.hpp>
#include <tame/time_source.hpp>

#include <boost/asio/any_completion_executor.hpp>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace tame {

/// A time_source that stands still until a test moves it: tokio's paused
/// time, for tame objects. advance() moves the time on and completes, in order
/// of deadline, every wait whose deadline it has reached; nothing else does.
///
///     auto time = std::make_shared<tame::manual_time>();
///     options.time = time;                 // a task_pool's, or a server's
///     ...
///     time->advance(std::chrono::seconds{5});
///     io.poll();                           // what was due has run
///
/// Waits complete through their handlers' executors, so a test still runs (or
/// polls) its io_context to see them. Destroying the manual_time completes the
/// waits still pending with operation_aborted.
///
/// Thread safety: every member may be called from any thread.
class manual_time final : public time_source {
  public:
    /// A clock that reads `start` until advanced. The default is an hour past
    /// the steady clock's epoch, so that `now() - d` stays valid for short `d`.
    explicit manual_time(time_point start = time_point{std::chrono::hours{1}})
        : state_{std::make_shared<state>(start)}
    {
    }

    manual_time(const manual_time&) = delete;
    manual_time& operator=(const manual_time&) = delete;

    ~manual_time() override
    {
        std::vector<std::shared_ptr<wait>> left;
        {
            std::lock_guard lock{state_->mutex};
            for (auto& [deadline, w] : state_->waits) {
                w->queued = false;
                left.push_back(std::move(w));
            }
            state_->waits.clear();
        }
        for (auto& w : left) {
            complete(std::move(w), asio::error::operation_aborted);
        }
    }

    time_point now() const noexcept override
    {
        std::lock_guard lock{state_->mutex};
        return state_->now;
    }

    /// Moves the time on by `by` (a negative duration is ignored), and
    /// completes every wait whose deadline has now come, earliest first.
    void advance(duration by)
    {
        std::vector<std::shared_ptr<wait>> due;
        {
            std::lock_guard lock{state_->mutex};
            if (by > duration::zero()) {
                state_->now += by;
            }
            auto end = state_->waits.upper_bound(state_->now);
            for (auto it = state_->waits.begin(); it != end; ++it) {
                it->second->queued = false;
                due.push_back(std::move(it->second));
            }
            state_->waits.erase(state_->waits.begin(), end);
        }
        for (auto& w : due) {
            complete(std::move(w), {});
        }
    }

    /// Waits not yet completed.
    std::size_t waiting() const
    {
        std::lock_guard lock{state_->mutex};
        return state_->waits.size();
    }

  protected:
    void start_wait(const asio::any_io_executor& ex, time_point deadline,
                    asio::any_completion_handler<void(error_code)> handler) override
    {
        auto slot = asio::get_associated_cancellation_slot(handler);
        auto w = std::make_shared<wait>(std::move(handler), ex, slot);
        {
            std::lock_guard lock{state_->mutex};
            if (deadline > state_->now) {
                // Hooked before anyone can see the wait: an advance() on another
                // thread may complete it as soon as the lock is released.
                if (slot.is_connected()) {
                    slot.template emplace<canceller>(state_, w);
                }
                w->place = state_->waits.emplace(deadline, w);
                w->queued = true;
                return;
            }
        }
        complete(std::move(w), {});
    }

  private:
    struct wait;
    using wait_map = std::multimap<time_point, std::shared_ptr<wait>>;

    struct state {
        explicit state(time_point start) : now{start} {}
        mutable std::mutex mutex;
        time_point now;
        wait_map waits;
    };

    /// One pending wait: its handler, and outstanding work on its executor.
    struct wait {
        wait(asio::any_completion_handler<void(error_code)> h, const asio::any_io_executor& ex,
             asio::cancellation_slot s)
            : handler{std::move(h)}, io{ex}, work{asio::prefer(
                                                 asio::get_associated_executor(handler, ex),
                                                 asio::execution::outstanding_work.tracked)},
              slot{s}
        {
        }

        asio::any_completion_handler<void(error_code)> handler;
        asio::any_io_executor io;
        asio::any_completion_executor work;
        asio::cancellation_slot slot;
        wait_map::iterator place; // valid while queued, under the mutex
        bool queued = false;      // guarded by the mutex
    };

    /// Lives in the handler's slot while the wait is queued; runs on the
    /// handler's executor, as cancellation slots require.
    class canceller {
      public:
        canceller(std::weak_ptr<state> s, std::weak_ptr<wait> w) noexcept
            : state_{std::move(s)}, wait_{std::move(w)}
        {
        }

        void operator()(asio::cancellation_type type) const
        {
            if (type == asio::cancellation_type::none) {
                return;
            }
            auto s = state_.lock();
            auto w = wait_.lock();
            if (!s || !w) {
                return;
            }
            {
                std::lock_guard lock{s->mutex};
                if (!w->queued) {
                    return; // already due: its completion is on its way
                }
                w->queued = false;
                s->waits.erase(w->place);
            }
            complete(std::move(w), asio::error::operation_aborted);
        }

      private:
        std::weak_ptr<state> state_;
        std::weak_ptr<wait> wait_;
    };

    /// Posts the handler of `w`, taken off the queue, with `ec`. Posted, never
    /// called here: this may run inside the slot's own canceller, which clearing
    /// the slot would destroy.
    static void complete(std::shared_ptr<wait> w, error_code ec)
    {
        // Posted to the wait's I/O executor, then run on the handler's own,
        // where its slot may be cleared.
        const asio::any_io_executor io = w->io;
        const asio::any_completion_executor ex = w->work;
        asio::post(io, asio::bind_executor(ex, [w = std::move(w), ec]() mutable {
                       if (w->slot.is_connected()) {
                           w->slot.clear();
                       }
                       auto handler = std::move(w->handler);
                       w.reset();
                       std::move(handler)(ec);
                   }));
    }

    std::shared_ptr<state> state_;
};

} // namespace tame
