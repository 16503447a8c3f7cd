#pragma once

#include <tame/detail/bound_operation.hpp>
#include <tame/detail/cancel_registry.hpp>
#include <tame/detail/config.hpp>
#include <tame/detail/wrapping_async_result.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstddef>
#include <exception>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace tame {

/// A completion token adapter that binds an operation to a cancel_source; made
/// by cancel_source::bind().
template <class Token>
struct cancel_source_binder {
    /// The completion token being adapted.
    Token token;
    /// The source whose emit() cancels the operation.
    std::shared_ptr<detail::cancel_source_state> source;
};

/// One cancellation signal for many operations, on any threads: Go's
/// `context.WithCancel`, tokio's `CancellationToken`.
///
/// `bind(token)` ties an operation to the source; `emit()` cancels every bound
/// operation still running, through its cancellation slot. An operation bound
/// after `emit()` is cancelled as soon as it has started. Child sources are
/// cancelled with their parent and can be cancelled alone.
///
/// The emission reaches each operation on its handler's associated executor (a
/// function posted there emits the operation's slot, unless the operation has
/// completed by then), so emit() is safe from any thread, as Asio's own slots
/// are not. As with any Asio cancellation, that executor must run the
/// operation's handlers one at a time: a strand, or an io_context run by one
/// thread.
///
/// A cancel_source is a handle: copies share one signal. Destroying the last
/// handle cancels nothing; bound operations keep the shared state alive until
/// they complete, and leave it as they do (its size goes back to zero).
///
/// Thread safety: every member may be called from any thread.
class cancel_source {
  public:
    /// A source not yet emitted, with no parent.
    cancel_source() : state_{std::make_shared<detail::cancel_source_state>()} {}

    /// A token for any Asio operation: the operation's cancellation slot is
    /// bound to this source. A cancellation that the caller's own handler would
    /// have received (a cancelled coroutine, say) still reaches the operation.
    ///
    /// The operation needs an executor to complete on (its handler's, or its I/O
    /// object's); the emission is delivered there.
    template <class Token>
    cancel_source_binder<std::decay_t<Token>> bind(Token&& token) const
    {
        return {std::forward<Token>(token), state_};
    }

    /// Cancels, with `type`, every bound operation still running and every child
    /// source; later bound operations and children are cancelled at once.
    /// May be called again, with the same or another type.
    void emit(asio::cancellation_type type = asio::cancellation_type::terminal)
    {
        state_->emit(static_cast<unsigned>(type));
    }

    /// True once emit() has been called on this source or an ancestor.
    bool cancelled() const noexcept { return state_->emitted() != 0; }

    /// The cancellation types emitted so far, combined (none before the first).
    asio::cancellation_type emitted() const noexcept
    {
        return static_cast<asio::cancellation_type>(state_->emitted());
    }

    /// A new source that is emitted when this one is, and can be emitted alone
    /// without touching this one. It starts cancelled if this one is.
    cancel_source make_child() const
    {
        return cancel_source{detail::cancel_source_state::make_child(state_)};
    }

    /// How many bound operations are still running, plus the live child sources.
    std::size_t bound() const noexcept { return state_->size(); }

  private:
    explicit cancel_source(std::shared_ptr<detail::cancel_source_state> state) noexcept
        : state_{std::move(state)}
    {
    }

    std::shared_ptr<detail::cancel_source_state> state_;
};

/// Runs `op` until `source` is emitted: `op` is then cancelled, with the type
/// emitted, through its cancellation slot, and awaited to its end. Returns what
/// `op` returns and throws what it throws (a cancelled op usually throws
/// operation_aborted): like with_timeout(), with a cancel_source for a
/// deadline, and nothing is left running. A cancellation of the caller reaches
/// `op` too. Go's `select` on `ctx.Done()`, for one job out of many:
/// `co_await with_cancellation(run_job(), job.cancel)`.
///
/// `op` runs as its own coroutine on the caller's executor, which must run
/// handlers one at a time (a strand, or an io_context run by one thread).
template <class T, class Executor>
asio::awaitable<T, Executor> with_cancellation(asio::awaitable<T, Executor> op,
                                               cancel_source source)
{
    // Named before the co_await: g++ 12 destroys some temporaries made inside one twice.
    auto until_emitted = source.bind(asio::as_tuple(asio::use_awaitable_t<Executor>{}));
    const auto ex = co_await asio::this_coro::executor;
    auto outcome = co_await asio::co_spawn(ex, std::move(op), std::move(until_emitted));
    if (std::get<0>(outcome)) {
        std::rethrow_exception(std::get<0>(outcome));
    }
    if constexpr (!std::is_void_v<T>) {
        co_return std::move(std::get<1>(outcome));
    }
}

} // namespace tame

template <class Token, class... Signatures>
struct boost::asio::async_result<tame::cancel_source_binder<Token>, Signatures...>
    : tame::detail::wrapping_async_result<tame::detail::initiate_bound_to_source, Token,
                                          Signatures...> {
};
