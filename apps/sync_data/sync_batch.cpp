#include "sync_data/sync_batch.hpp"

#include <tame/task_group.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asio = boost::asio;

namespace samples {
namespace {

asio::awaitable<void> sync_one(std::shared_ptr<sync_progress> progress,
                               tame::async_semaphore* service_slots,
                               std::chrono::milliseconds task_time)
{
    const auto permit = co_await service_slots->acquire();
    const concurrency_meter::scope running{progress->meter};
    asio::steady_timer validation_call{co_await asio::this_coro::executor, task_time};
    co_await validation_call.async_wait(asio::use_awaitable);
    progress->done.fetch_add(1, std::memory_order_relaxed);
}

} // namespace

asio::awaitable<void> run_sync_batch(asio::any_io_executor ex, sync_batch_spec spec,
                                     std::shared_ptr<sync_progress> progress,
                                     tame::async_semaphore& service_slots)
{
    tame::task_group group{ex, spec.concurrency};
    std::exception_ptr stopped;
    try {
        for (std::size_t i = 0; i < spec.tasks; ++i) {
            // Named, not made inside the co_await: g++ 12 would destroy it
            // twice (see the README).
            auto task = [progress, slots = &service_slots, time = spec.task_time] {
                return sync_one(progress, slots, time);
            };
            // Waits for a free slot: the group's limit is the batch's concurrency.
            co_await group.spawn(std::move(task));
        }
    } catch (...) {
        stopped = std::current_exception();
        group.cancel();
    }

    // Join in any case, even when this coroutine was cancelled: the tasks must
    // end before the batch does. A cancellation that arrives now cancels the
    // group, and the join still waits for it.
    const bool throw_if_cancelled = co_await asio::this_coro::throw_if_cancelled();
    co_await asio::this_coro::throw_if_cancelled(false);
    auto [failure] = co_await group.async_join(asio::as_tuple(asio::use_awaitable));
    co_await asio::this_coro::throw_if_cancelled(throw_if_cancelled);
    if (stopped) {
        std::rethrow_exception(stopped);
    }
    if (failure) {
        std::rethrow_exception(failure);
    }
}

} // namespace samples
