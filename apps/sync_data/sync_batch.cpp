#include "sync_data/sync_batch.hpp"

#include <tame/cancel_source.hpp>
#include <tame/task_group.hpp>
#include <tame/with_task_group.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asio = boost::asio;

namespace samples {
namespace {

asio::awaitable<void> sync_one(std::shared_ptr<sync_progress> progress, task_slots* service_slots,
                               std::chrono::milliseconds task_time)
{
    const auto slot = co_await service_slots->acquire();
    const concurrency_meter::scope running{progress->meter};
    asio::steady_timer validation_call{co_await asio::this_coro::executor, task_time};
    if (slot.is_shared()) {
        co_await tame::with_cancellation(validation_call.async_wait(asio::use_awaitable),
                                         slot.lost());
    } else {
        co_await validation_call.async_wait(asio::use_awaitable);
    }
    progress->done.fetch_add(1, std::memory_order_relaxed);
}

} // namespace

asio::awaitable<void> run_sync_batch(asio::any_io_executor ex, sync_batch_spec spec,
                                     std::shared_ptr<sync_progress> progress,
                                     task_slots& service_slots)
{
    auto spawn_all = [&](tame::task_group& group) -> asio::awaitable<void> {
        for (std::size_t i = 0; i < spec.tasks; ++i) {
            // Named, not made inside the co_await: g++ 12 would destroy it
            // twice (docs/behaviour.md).
            auto task = [progress, slots = &service_slots, time = spec.task_time] {
                return sync_one(progress, slots, time);
            };
            co_await group.spawn(std::move(task)); // waits for one of the batch's slots
        }
    };
    // The group's limit is the batch's concurrency. with_task_group joins it
    // whatever happens: when this coroutine is cancelled, the loop above stops
    // and the tasks are cancelled, and it throws only once all have ended.
    co_await tame::with_task_group(std::move(ex), spec.concurrency, std::move(spawn_all));
}

} // namespace samples
