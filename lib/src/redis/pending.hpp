#pragma once

// A caller's handler waiting inside tame::redis: completed once, from the
// connection's strand, on the handler's associated executor (with outstanding
// work there meanwhile), which clears the caller's cancellation slot before
// the handler runs.
//
// The handler's executor is only known type-erased, as an
// any_completion_executor, which cannot be asked for blocking.never; so the
// completion is posted to the connection's I/O executor first and handed to
// the handler's executor from there, outside the strand, where running it
// inline cannot re-enter the connection mid-read.

#include <tame/error.hpp>

#include <boost/asio/any_completion_executor.hpp>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>

#include <memory>
#include <utility>

namespace tame::redis::detail {

namespace asio = boost::asio;

/// `T...`: what the handler gets after its error_code (nothing, for
/// `void(error_code)`).
template <class... T>
class pending_result {
  public:
    using handler_type = asio::any_completion_handler<void(error_code, T...)>;

    pending_result(handler_type handler, const asio::any_io_executor& fallback)
        : handler_{std::move(handler)}, io_{fallback},
          work_{asio::prefer(asio::get_associated_executor(handler_, fallback),
                             asio::execution::outstanding_work.tracked)},
          slot_{asio::get_associated_cancellation_slot(handler_)}
    {
    }

    /// True once completed: a later outcome is dropped.
    bool done() const noexcept { return done_; }

    /// Installs `canceller` in the caller's slot, if it has one. Called in the
    /// initiating function, where the slot may be touched.
    template <class Canceller, class... Args>
    void arm(Args&&... args)
    {
        if (slot_.is_connected()) {
            slot_.template emplace<Canceller>(std::forward<Args>(args)...);
        }
    }

    /// Completes the handler with `ec` and `values`, unless done already.
    void complete(error_code ec, T... values)
    {
        if (done_) {
            return;
        }
        done_ = true;
        asio::post(io_, [work = std::move(work_), handler = std::move(handler_), slot = slot_, ec,
                         ... values = std::move(values)]() mutable {
            work.execute(
                [handler = std::move(handler), slot, ec, ... values = std::move(values)]() mutable {
                    // On the handler's executor: the one place where its slot may be cleared.
                    if (slot.is_connected()) {
                        slot.clear();
                    }
                    std::move(handler)(ec, std::move(values)...);
                });
        });
    }

  private:
    handler_type handler_;
    asio::any_io_executor io_;
    asio::any_completion_executor work_;
    asio::cancellation_slot slot_;
    bool done_ = false;
};

/// In the slot of an operation that only waits for a reply: the caller stops
/// waiting, with operation_aborted (any cancellation type: nothing is undone,
/// and a reply that comes later is dropped).
template <class... T>
class abandon_canceller {
  public:
    abandon_canceller(std::weak_ptr<pending_result<T...>> result, asio::any_io_executor strand)
        : result_{std::move(result)}, strand_{std::move(strand)}
    {
    }

    void operator()(asio::cancellation_type)
    {
        asio::post(strand_, [result = result_] {
            if (auto r = result.lock()) {
                r->complete(asio::error::operation_aborted, T{}...);
            }
        });
    }

  private:
    std::weak_ptr<pending_result<T...>> result_;
    asio::any_io_executor strand_;
};

} // namespace tame::redis::detail
