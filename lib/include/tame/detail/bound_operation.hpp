#pragma once

#include <tame/detail/cancel_registry.hpp>
#include <tame/detail/config.hpp>
#include <tame/detail/recycling_allocator.hpp>
#include <tame/detail/signalled_handler.hpp>

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <memory>
#include <type_traits>
#include <utility>

namespace tame::detail {

/// An operation bound to a cancel_source, while it runs: the signal its slot is
/// bound to, and its place in the source's registrations.
///
/// An emit() of the source reaches it on any thread; the signal is then emitted
/// by a function posted to the handler's executor, the only place where the
/// operation's slot may be used, and only if the operation is still running.
template <class Executor>
class bound_operation final : public cancel_registration {
  public:
    bound_operation(const Executor& ex, std::shared_ptr<cancel_source_state> source)
        : executor_{ex}, source_{std::move(source)}
    {
    }

    ~bound_operation() { detach(); }

    /// Registers with the source; the types already emitted when it was too late
    /// (0 when attached).
    unsigned attach()
    {
        const unsigned emitted = source_->attach(*this);
        attached_ = emitted == 0;
        return emitted;
    }

    void deliver(unsigned type) override
    {
        // While the operation is being initiated, its slot is being set up on the
        // initiating thread (for co_spawn, its coroutine even starts there): the
        // emission waits for initiated(), which posts it.
        unsigned seen = deferred_.load(std::memory_order_acquire);
        while ((seen & initiating) != 0) {
            if (deferred_.compare_exchange_weak(seen, seen | type, std::memory_order_acq_rel)) {
                return;
            }
        }
        post_emission(type);
    }

    /// The operation has been initiated: an emission that arrived meanwhile (or
    /// before it was bound) goes out now.
    void initiated()
    {
        if (const unsigned pending = deferred_.exchange(0, std::memory_order_acq_rel) & ~initiating;
            pending != 0) {
            post_emission(pending);
        }
    }

    /// The operation has completed: no emit() needs to reach it any more.
    void finish() noexcept
    {
        done_.store(true, std::memory_order_release);
        detach();
    }

    asio::cancellation_signal signal;

  private:
    static constexpr unsigned initiating = 1u << 31; // above every cancellation_type bit

    void post_emission(unsigned type)
    {
        auto self = std::static_pointer_cast<bound_operation>(shared_from_this());
        asio::post(executor_, [self = std::move(self), type] {
            if (!self->done_.load(std::memory_order_acquire)) {
                self->signal.emit(static_cast<asio::cancellation_type>(type));
            }
        });
    }

    void detach() noexcept
    {
        if (attached_) {
            attached_ = false;
            source_->detach(*this);
        }
    }

    Executor executor_;
    std::shared_ptr<cancel_source_state> source_;
    bool attached_ = false; // used only on the handler's side
    std::atomic<bool> done_{false};
    std::atomic<unsigned> deferred_{initiating}; // the flag, and the types emitted meanwhile
};

/// Wraps an initiation so that the handler it receives is bound to a source.
template <class Initiation>
class initiate_bound_to_source {
  public:
    /// `binder` is a cancel_source_binder: only its source is kept.
    template <class Binder>
    initiate_bound_to_source(Initiation initiation, const Binder& binder)
        : initiation_{std::move(initiation)}, source_{binder.source}
    {
    }

    template <class Handler, class... Args>
    void operator()(Handler&& handler, Args&&... args)
    {
        using handler_type = std::decay_t<Handler>;
        auto ex = completion_executor_of(handler, initiation_);
        static_assert(!std::is_same_v<decltype(ex), no_executor>,
                      "cancel_source::bind needs the executor the operation completes on: "
                      "this operation names none, so bind one to the handler "
                      "(asio::bind_executor)");
        using state_type = bound_operation<decltype(ex)>;

        auto state = std::allocate_shared<state_type>(recycling_allocator<state_type>{}, ex,
                                                      std::move(source_));
        // Bound after an emit(): the operation is cancelled as soon as it has
        // started, the way an emit() reaches it, on its handler's executor (not
        // here: the initiating thread need not be that executor's).
        if (const unsigned emitted = state->attach(); emitted != 0) {
            state->deliver(emitted);
        }
        std::move(initiation_)(
            signalled_handler<handler_type, state_type>{std::forward<Handler>(handler), state},
            std::forward<Args>(args)...);
        state->initiated();
    }

  private:
    Initiation initiation_;
    std::shared_ptr<cancel_source_state> source_;
};

} // namespace tame::detail
