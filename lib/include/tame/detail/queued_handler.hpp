#pragma once

#include <tame/detail/config.hpp>

#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/execution/executor.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/recycling_allocator.hpp>

#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace tame::detail {

/// An executor together with outstanding work on it: while a handler waits in a
/// queue, its io_context must not run out of work, as with Asio's own operations.
template <class Executor, class = void>
class work_tracked_executor {
public:
    explicit work_tracked_executor(const Executor& ex)
        : ex_{asio::prefer(ex, asio::execution::outstanding_work.tracked)}
    {
    }

    const auto& get() const noexcept { return ex_; }

private:
    std::decay_t<decltype(asio::prefer(std::declval<const Executor&>(),
                                       asio::execution::outstanding_work.tracked))>
        ex_;
};

/// Networking-TS style executors (such as `io_context::strand`) count work by hand.
template <class Executor>
class work_tracked_executor<
    Executor, std::enable_if_t<!asio::execution::is_executor<Executor>::value>> {
public:
    explicit work_tracked_executor(const Executor& ex) : guard_{ex} {}

    Executor get() const noexcept { return guard_.get_executor(); }

private:
    asio::executor_work_guard<Executor> guard_;
};

/// A completion handler parked in a queue until its operation's result is known.
///
/// `Base` is the type-erased queue element of the owning object; it declares
/// `virtual void complete(Args...)`. complete() stores the result and posts the
/// handler to its associated executor, so the handler never runs inside the call
/// that produced the result (nor under the owner's lock). The element's memory
/// comes from the handler's associated allocator (Asio's recycling allocator by
/// default) and is freed before the handler runs, so that a handler which queues
/// again reuses it.
template <class Base, class Handler, class IoExecutor, class... Args>
class queued_handler final : public Base {
    using allocator_type = typename std::allocator_traits<asio::associated_allocator_t<
        Handler, asio::recycling_allocator<void>>>::template rebind_alloc<queued_handler>;
    using alloc_traits = std::allocator_traits<allocator_type>;
    using handler_executor = asio::associated_executor_t<Handler, IoExecutor>;

public:
    /// Allocates an element that owns `handler`; `base_args` construct the Base.
    template <class... BaseArgs>
    static queued_handler& create(Handler handler, const IoExecutor& io_ex,
                                  BaseArgs&&... base_args)
    {
        allocator_type alloc{
            asio::get_associated_allocator(handler, asio::recycling_allocator<void>{})};
        queued_handler* memory = alloc_traits::allocate(alloc, 1);
        try {
            return *new (memory) queued_handler{alloc, std::move(handler), io_ex,
                                                std::forward<BaseArgs>(base_args)...};
        } catch (...) {
            alloc_traits::deallocate(alloc, memory, 1);
            throw;
        }
    }

    /// Installs `Canceller{args...}` in the handler's cancellation slot, if it has one.
    ///
    /// Must be called before the element becomes visible to other threads: the
    /// slot belongs to the handler's executor and is cleared there on completion.
    template <class Canceller, class... CancellerArgs>
    void install_canceller(CancellerArgs&&... args)
    {
        if (slot_.is_connected()) {
            slot_.template emplace<Canceller>(std::forward<CancellerArgs>(args)...);
        }
    }

    void complete(Args... args) override
    {
        result_.emplace(std::move(args)...);
        asio::post(work_.get(), invoker{this});
    }

private:
    /// The posted function object; it owns the element until it runs.
    class invoker {
    public:
        explicit invoker(queued_handler* op) noexcept : op_{op} {}
        invoker(invoker&& other) noexcept : op_{std::exchange(other.op_, nullptr)} {}
        invoker& operator=(invoker&&) = delete;

        // Destroyed without running: the execution context shut down first. The
        // result (a permit, say) is destroyed with the element and so given back.
        ~invoker()
        {
            if (op_ != nullptr) {
                op_->destroy();
            }
        }

        void operator()() { std::exchange(op_, nullptr)->invoke(); }

    private:
        queued_handler* op_;
    };

    template <class... BaseArgs>
    queued_handler(const allocator_type& alloc, Handler&& handler, const IoExecutor& io_ex,
                   BaseArgs&&... base_args)
        : Base{std::forward<BaseArgs>(base_args)...},
          alloc_{alloc},
          handler_{std::move(handler)},
          work_{asio::get_associated_executor(handler_, io_ex)},
          slot_{asio::get_associated_cancellation_slot(handler_)}
    {
    }

    void invoke()
    {
        Handler handler{std::move(handler_)};
        std::tuple<Args...> result{std::move(*result_)};
        destroy();
        std::apply(std::move(handler), std::move(result));
    }

    void destroy() noexcept
    {
        // We run on the handler's executor (or at its context's shutdown), the only
        // place where the slot may be touched while its signal could be emitted.
        slot_.clear();
        allocator_type alloc{alloc_};
        this->~queued_handler();
        alloc_traits::deallocate(alloc, this, 1);
    }

    [[no_unique_address]] allocator_type alloc_;
    Handler handler_;
    work_tracked_executor<handler_executor> work_;
    asio::associated_cancellation_slot_t<Handler> slot_;
    std::optional<std::tuple<Args...>> result_;
};

} // namespace tame::detail
