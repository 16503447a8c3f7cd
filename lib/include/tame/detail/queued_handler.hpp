#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/recycling_allocator.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/execution/blocking.hpp>
#include <boost/asio/execution/executor.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/require.hpp>

#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

namespace tame::detail {

/// Where a queued handler will run: its associated executor, holding outstanding
/// work there (as Asio's own operations do while they wait, so that the io_context
/// does not run out of work) and required never to run a function inline. Both
/// properties are applied once, when the handler is queued; completing it is then
/// a single execute(), with no further conversions of a type-erased executor.
template <class Executor, class = void>
class completion_executor {
  public:
    explicit completion_executor(const Executor& ex)
        : ex_{asio::prefer(asio::require(ex, asio::execution::blocking.never),
                           asio::execution::outstanding_work.tracked)}
    {
    }

    template <class Function>
    void post(Function&& f) const
    {
        ex_.execute(std::forward<Function>(f));
    }

  private:
    std::decay_t<decltype(asio::prefer(
        asio::require(std::declval<const Executor&>(), asio::execution::blocking.never),
        asio::execution::outstanding_work.tracked))>
        ex_;
};

/// Networking-TS style executors (such as `io_context::strand`) count work by hand.
template <class Executor>
class completion_executor<Executor,
                          std::enable_if_t<!asio::execution::is_executor<Executor>::value>> {
  public:
    explicit completion_executor(const Executor& ex) : guard_{ex} {}

    template <class Function>
    void post(Function&& f) const
    {
        asio::post(guard_.get_executor(), std::forward<Function>(f));
    }

  private:
    asio::executor_work_guard<Executor> guard_;
};

/// The common case: a coroutine's any_io_executor that wraps an io_context's
/// executor. Keeping the concrete executor lets both the preparation (when the
/// handler is queued) and the completion skip the type-erased conversions of
/// any_io_executor, which cost more than the rest of a wake-up.
template <>
class completion_executor<asio::any_io_executor> {
    using io_executor = std::decay_t<decltype(asio::prefer(
        asio::require(std::declval<const asio::io_context::executor_type&>(),
                      asio::execution::blocking.never),
        asio::execution::outstanding_work.tracked))>;

  public:
    explicit completion_executor(const asio::any_io_executor& ex) : ex_{prepare(ex)} {}

    template <class Function>
    void post(Function&& f) const
    {
        if (const auto* io = std::get_if<io_executor>(&ex_)) {
            io->execute(std::forward<Function>(f));
        } else {
            std::get<asio::any_io_executor>(ex_).execute(std::forward<Function>(f));
        }
    }

  private:
    static std::variant<io_executor, asio::any_io_executor> prepare(const asio::any_io_executor& ex)
    {
        if (const auto* io = ex.target<asio::io_context::executor_type>()) {
            return asio::prefer(asio::require(*io, asio::execution::blocking.never),
                                asio::execution::outstanding_work.tracked);
        }
        return asio::prefer(asio::require(ex, asio::execution::blocking.never),
                            asio::execution::outstanding_work.tracked);
    }

    std::variant<io_executor, asio::any_io_executor> ex_;
};

/// A completion handler parked in a queue until its operation's outcome is known.
///
/// `Base` is the type-erased queue element of the owning object. It declares
/// `virtual void complete()`, and `take_result(Base&)` (found by argument-dependent
/// lookup) turns its outcome into the handler's arguments as a std::tuple.
///
/// complete() posts the handler to its associated executor, so the handler never
/// runs inside the call that decided the outcome (nor under the owner's lock).
/// The element's memory comes from the handler's associated allocator (by
/// default a per-thread cache, see recycling_allocator.hpp) and is freed before
/// the handler runs, so a handler that queues again reuses it.
template <class Base, class Handler, class IoExecutor>
class queued_handler final : public Base {
    using allocator_type = typename std::allocator_traits<asio::associated_allocator_t<
        Handler, detail::recycling_allocator<void>>>::template rebind_alloc<queued_handler>;
    using alloc_traits = std::allocator_traits<allocator_type>;
    using handler_executor = asio::associated_executor_t<Handler, IoExecutor>;

  public:
    /// Creates an element for `handler`, installs `Canceller{&element}` in the
    /// handler's cancellation slot (if it has one) and hands the element to
    /// `start(Base&)`, which queues or completes it. If either step throws, the
    /// element is destroyed unposted and the exception propagates.
    ///
    /// The slot is hooked first, before the element becomes visible to other
    /// threads: once queued, it may be completed on another thread at any moment,
    /// and the slot belongs to the handler's executor.
    template <class Canceller, class Start, class... BaseArgs>
    static void launch(Handler handler, const IoExecutor& io_ex, Start&& start,
                       BaseArgs&&... base_args)
    {
        queued_handler& element =
            create(std::move(handler), io_ex, std::forward<BaseArgs>(base_args)...);
        try {
            if (element.slot_.is_connected()) {
                element.slot_.template emplace<Canceller>(static_cast<Base*>(&element));
            }
            std::forward<Start>(start)(static_cast<Base&>(element));
        } catch (...) {
            element.destroy(); // not queued: nobody else knows of it
            throw;
        }
    }

    void complete() override
    {
        // The posted invoker may run, and destroy this element, before execute()
        // returns: post through a local executor, never through a member. The
        // queued function now holds the work that the member held.
        auto executor = std::move(executor_);
        executor.post(invoker{this});
    }

  private:
    /// Allocates an element that owns `handler`; `base_args` construct the Base.
    template <class... BaseArgs>
    static queued_handler& create(Handler handler, const IoExecutor& io_ex, BaseArgs&&... base_args)
    {
        allocator_type alloc{
            asio::get_associated_allocator(handler, detail::recycling_allocator<void>{})};
        queued_handler* memory = alloc_traits::allocate(alloc, 1);
        try {
            return *new (memory) queued_handler{alloc, std::move(handler), io_ex,
                                                std::forward<BaseArgs>(base_args)...};
        } catch (...) {
            alloc_traits::deallocate(alloc, memory, 1);
            throw;
        }
    }

    /// The posted function object; it owns the element until it runs.
    class invoker {
      public:
        explicit invoker(queued_handler* op) noexcept : op_{op} {}
        invoker(invoker&& other) noexcept : op_{std::exchange(other.op_, nullptr)} {}
        invoker& operator=(invoker&&) = delete;

        // Destroyed without running: the execution context shut down first.
        ~invoker()
        {
            if (op_ != nullptr) {
                op_->discard();
            }
        }

        void operator()() { std::exchange(op_, nullptr)->invoke(); }

      private:
        queued_handler* op_;
    };

    template <class... BaseArgs>
    queued_handler(const allocator_type& alloc, Handler&& handler, const IoExecutor& io_ex,
                   BaseArgs&&... base_args)
        : Base{std::forward<BaseArgs>(base_args)...}, alloc_{alloc}, handler_{std::move(handler)},
          executor_{asio::get_associated_executor(handler_, io_ex)},
          slot_{asio::get_associated_cancellation_slot(handler_)}
    {
    }

    void invoke()
    {
        // First, while nothing else runs here: take_result() may hand the
        // element's resources (a state reference) to the result.
        slot_.clear();
        Handler handler{std::move(handler_)};
        auto result = take_result(static_cast<Base&>(*this));
        destroy();
        std::apply(std::move(handler), std::move(result));
    }

    void discard() noexcept
    {
        // The result is dropped with the element: a permit in it is given back.
        slot_.clear();
        static_cast<void>(take_result(static_cast<Base&>(*this)));
        destroy();
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
    completion_executor<handler_executor> executor_;
    asio::associated_cancellation_slot_t<Handler> slot_;
};

} // namespace tame::detail
