// A report service's pool: one per process, at most 3 reports at once. Report 4
// fails. First the ants way (Submit, then wait on a WaitGroup), then async_run,
// which brings each report's text or exception back to the caller.
#include <tame/task_pool.hpp>
#include <tame/wait_group.hpp>

#include <boost/asio.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

asio::awaitable<std::string> generate_report(int id)
{
    asio::steady_timer render{co_await asio::this_coro::executor, 10ms}; // PDF, queries...
    co_await render.async_wait(asio::use_awaitable); // cancelled by cancel_all()
    if (id == 4) {
        throw std::runtime_error{"report 4: no such patient"};
    }
    co_return "report " + std::to_string(id);
}

// The seed's handler: submit each report, wait for all of them.
asio::awaitable<void> generate_all(tame::task_pool& pool, std::vector<int> ids)
{
    tame::wait_group wg{co_await asio::this_coro::executor};
    for (int id : ids) {
        wg.add();
        auto task = [&wg, id]() -> asio::awaitable<void> {
            struct done_on_exit { // Go's `defer wg.Done()`
                tame::wait_group& wg;
                ~done_on_exit() { wg.done(); }
            } done{wg};
            co_await generate_report(id); // a failure goes to on_exception
        };
        // Waits while 3 reports run: backpressure instead of a goroutine per id.
        auto [ec] =
            co_await pool.async_submit(std::move(task), asio::as_tuple(asio::use_awaitable));
        if (ec) {
            wg.done(); // refused (closed, or overloaded with max_waiting): never ran
        }
    }
    co_await wg.async_wait(asio::use_awaitable);
}

// The same with results: each report's text, or why it failed.
asio::awaitable<std::vector<std::string>> collect_all(tame::task_pool& pool, std::vector<int> ids)
{
    std::vector<std::string> results(ids.size());
    tame::wait_group wg{co_await asio::this_coro::executor};
    for (std::size_t i = 0; i < ids.size(); ++i) {
        wg.add();
        pool.async_run([id = ids[i]] { return generate_report(id); },
                       [&, i](std::exception_ptr failure, std::string text) {
                           try {
                               if (failure) {
                                   std::rethrow_exception(failure);
                               }
                               results[i] = std::move(text);
                           } catch (const std::exception& e) {
                               results[i] = std::string{"failed: "} + e.what();
                           }
                           wg.done();
                       });
    }
    co_await wg.async_wait(asio::use_awaitable);
    co_return results;
}

int main()
{
    asio::io_context io;
    tame::task_pool_options options;
    options.capacity = 3;
    options.on_exception = [](std::exception_ptr e) { // ants.WithPanicHandler
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& error) {
            std::printf("a report failed: %s\n", error.what());
        }
    };
    tame::task_pool pool{io, options};

    std::vector<std::string> results;
    std::size_t cancelled = 99;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            const std::vector<int> ids{1, 2, 3, 4, 5, 6}; // named: see "g++ 12" below
            co_await generate_all(pool, ids);
            results = co_await collect_all(pool, ids);
            // Graceful stop: no new work, 1 s for what runs, then cancel the rest.
            cancelled = co_await pool.async_shutdown(1s, asio::use_awaitable);
        },
        asio::detached);
    io.run();

    for (const auto& line : results) {
        std::printf("%s\n", line.c_str());
    }
    const auto stats = pool.stats();
    std::printf("%llu reports, %llu failed, %zu cancelled at shutdown\n",
                static_cast<unsigned long long>(stats.submitted),
                static_cast<unsigned long long>(stats.failed), cancelled);
    return stats.submitted == 12 && stats.failed == 2 && cancelled == 0 &&
                   results[3] == "failed: report 4: no such patient"
               ? 0
               : 1;
}
