#pragma once

#include <tame/detail/config.hpp>
#include <tame/detail/signalled_handler.hpp>
#include <tame/detail/task_group/state.hpp>
#include <tame/error.hpp>
#include <tame/permit.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/system_error.hpp>

#include <exception>
#include <memory>
#include <utility>

namespace tame::detail {

/// Lives in a join's cancellation slot: cancelling the join cancels the group,
/// whose tasks the join then still waits for.
///
/// Holds the group weakly: the slot belongs to the joining coroutine, whose
/// frame the join's own handler keeps alive from inside the group's state.
class join_canceller {
  public:
    explicit join_canceller(std::weak_ptr<task_group_state> group) noexcept
        : group_{std::move(group)}
    {
    }

    void operator()(asio::cancellation_type type) const
    {
        // Cancelling the group has side effects, so total cancellation, which
        // promises none, is not supported.
        if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial)) ==
            asio::cancellation_type::none) {
            return;
        }
        if (auto group = group_.lock()) {
            group->cancel_all();
        }
    }

  private:
    std::weak_ptr<task_group_state> group_;
};

/// The handler of the wait behind task_group::async_join: turns its end into the
/// join's `void(std::exception_ptr)`. The wait itself is never cancelled (it has
/// no slot); the join's own slot cancels the group instead.
template <class Handler>
class join_completion {
  public:
    using cancellation_slot_type = asio::cancellation_slot;

    join_completion(Handler handler, const std::shared_ptr<task_group_state>& group)
        : handler_{std::move(handler)}, failure_{group->failure},
          outer_slot_{asio::get_associated_cancellation_slot(handler_)}
    {
        if (outer_slot_.is_connected()) {
            outer_slot_.template emplace<join_canceller>(group);
        }
    }

    join_completion(join_completion&&) noexcept = default;
    join_completion& operator=(join_completion&&) = delete;

    ~join_completion()
    {
        // Destroyed uncalled (its io_context was destroyed): unhook the canceller.
        if (failure_ && outer_slot_.is_connected()) {
            outer_slot_.clear();
        }
    }

    cancellation_slot_type get_cancellation_slot() const noexcept { return {}; }

    void operator()(error_code ec)
    {
        if (outer_slot_.is_connected()) {
            outer_slot_.clear();
        }
        // Reset, so that the destructor leaves the slot alone: once the handler
        // has run, the slot may belong to a coroutine frame that is gone.
        const auto failure = std::move(failure_);
        std::exception_ptr e = failure->get();
        if (!e && ec) {
            // The group was destroyed before its tasks ended.
            e = std::make_exception_ptr(boost::system::system_error{ec});
        }
        std::move(handler_)(std::move(e));
    }

    const Handler& inner() const noexcept { return handler_; }

  private:
    Handler handler_;
    std::shared_ptr<const first_failure> failure_; // null once called
    asio::associated_cancellation_slot_t<Handler> outer_slot_;
};

} // namespace tame::detail

// Every associated property of a join's handler except its cancellation slot.
template <template <class, class> class Associator, class Handler, class Default>
struct boost::asio::associator<Associator, tame::detail::join_completion<Handler>, Default>
    : tame::detail::inner_associator<Associator, tame::detail::join_completion<Handler>, Handler,
                                     Default> {
};
