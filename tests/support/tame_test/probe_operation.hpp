#pragma once

#include <tame/error.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include <memory>
#include <optional>
#include <utility>

namespace tame_test {

/// An operation that never completes by itself: it waits for its cancellation
/// slot, records the type it received, and completes with operation_aborted.
/// Exactly what a test of cancelling adapters needs to observe.
template <class Executor, class Token>
auto async_wait_for_cancellation(Executor ex, std::optional<boost::asio::cancellation_type>& seen,
                                 Token&& token)
{
    namespace asio = boost::asio;
    return asio::async_initiate<Token, void(tame::error_code)>(
        [ex, &seen](auto handler) {
            using handler_type = decltype(handler);
            struct state {
                handler_type handler;
                asio::associated_cancellation_slot_t<handler_type> slot;
            };
            auto slot = asio::get_associated_cancellation_slot(handler);
            if (!slot.is_connected()) {
                return; // nothing can ever complete it: drop the handler
            }
            auto st = std::make_shared<state>(state{std::move(handler), slot});
            slot.assign([ex, &seen, st](asio::cancellation_type type) {
                seen = type;
                // Complete through the executor: clearing the slot destroys this
                // very function object.
                asio::post(ex, [st] {
                    st->slot.clear();
                    std::move(st->handler)(tame::error_code{asio::error::operation_aborted});
                });
            });
        },
        token);
}

} // namespace tame_test
