// Sync 20 records, at most 4 at once. Record 13 is corrupt: its failure cancels the
// records still running, no more start, and the join reports it.
#include <tame/task_group.hpp>

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
    tame::task_group group{co_await asio::this_coro::executor, 4}; // errgroup with SetLimit(4)
    int started = 0;
    for (int id = 0; id < 20; ++id) {
        // Waits for a free slot: never more than 4 records at once.
        auto [ec] = co_await group.async_spawn([id] { return sync_record(id); },
                                               asio::as_tuple(asio::use_awaitable));
        if (ec) {
            break; // the group was cancelled: a record failed
        }
        ++started;
    }
    try {
        co_await group.async_join(asio::use_awaitable); // rethrows the first failure
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
