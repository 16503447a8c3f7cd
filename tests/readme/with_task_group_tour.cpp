// Sync 20 records, at most 4 at once, in a group that cannot be left unjoined.
// Record 13 is corrupt: its failure cancels the records still running and the
// loop that starts them, and with_task_group throws it once all have ended.
#include <tame/with_task_group.hpp>

#include <boost/asio.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>

namespace asio = boost::asio;
using namespace std::chrono_literals;

asio::awaitable<void> sync_record(int id)
{
    asio::steady_timer write{co_await asio::this_coro::executor, 5ms * (1 + id % 4)};
    co_await write.async_wait(asio::use_awaitable); // cancelled if another record fails
    if (id == 13) {
        throw std::runtime_error{"record 13 is corrupt"};
    }
    std::printf("record %d synced\n", id);
}

asio::awaitable<int> sync_batch()
{
    int started = 0;
    auto spawn_all = [&](tame::task_group& group) -> asio::awaitable<void> {
        for (int id = 0; id < 20; ++id) {
            // Waits for a free slot; throws operation_aborted once a record has failed.
            co_await group.spawn([id] { return sync_record(id); });
            ++started;
        }
    }; // with_task_group waits for the records started here, whatever happens
    try {
        const auto ex = co_await asio::this_coro::executor;
        co_await tame::with_task_group(ex, 4, spawn_all); // errgroup with SetLimit(4)
        std::printf("all %d records synced\n", started);
    } catch (const std::exception& e) {
        std::printf("batch failed after %d records had started: %s\n", started, e.what());
    }
    co_return started;
}

int main()
{
    asio::io_context io;
    int started = 0;
    asio::co_spawn(io, sync_batch(), [&](std::exception_ptr, int n) { started = n; });
    io.run(); // returns when the batch is over: no task is left running
    return started > 13 && started < 20 ? 0 : 1;
}
