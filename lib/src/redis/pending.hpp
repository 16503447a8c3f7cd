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
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>

#include <utility>

namespace tame::redis::detail {

namespace asio = boost::asio;

template <class T>
class pending_result {
  public:
    using handler_type = asio::any_completion_handler<void(error_code, T)>;

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

    /// Completes the handler with `ec` and `value`, unless done already.
    void complete(error_code ec, T value)
    {
        if (done_) {
            return;
        }
        done_ = true;
        asio::post(io_, [work = std::move(work_), handler = std::move(handler_), slot = slot_, ec,
                         value = std::move(value)]() mutable {
            work.execute(
                [handler = std::move(handler), slot, ec, value = std::move(value)]() mutable {
                    // On the handler's executor: the one place where its slot may be cleared.
                    if (slot.is_connected()) {
                        slot.clear();
                    }
                    std::move(handler)(ec, std::move(value));
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

} // namespace tame::redis::detail
