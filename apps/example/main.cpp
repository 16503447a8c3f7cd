// tame-example: the data-sync batch of the source article, done with tame.
//
// `tasks` jobs, each a timer standing for a call to a validation service, run
// with at most `concurrency` at once: every job is a coroutine that first takes a
// permit from an async_semaphore, and a wait_group tells main when all are done.
#include <tame/semaphore.hpp>
#include <tame/wait_group.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/program_options.hpp>

#include <cmath>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace po = boost::program_options;
using namespace std::chrono_literals;

namespace {

struct batch_options {
    int tasks = 100;
    std::size_t concurrency = 10;
    int task_ms = 20;
    int threads = 2;
};

/// Counts jobs running now and the most that ever ran at once.
struct concurrency_meter {
    std::atomic<int> running{0};
    std::atomic<int> peak{0};

    void enter()
    {
        const int now = ++running;
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
    }
    void leave() { --running; }
};

asio::awaitable<void> sync_one(tame::async_semaphore& limit, tame::wait_group& group,
                               concurrency_meter& meter, std::chrono::milliseconds work)
{
    {
        auto permit = co_await limit.acquire();
        meter.enter();
        asio::steady_timer call{co_await asio::this_coro::executor, work};
        co_await call.async_wait(asio::use_awaitable);
        meter.leave();
    } // the permit goes back here, waking the next job in line
    group.done();
}

} // namespace

int main(int argc, char** argv)
{
    batch_options opts;
    po::options_description desc{"tame-example: a bounded-concurrency batch"};
    desc.add_options()("help", "show this help")(
        "tasks", po::value(&opts.tasks)->default_value(opts.tasks), "jobs in the batch")(
        "concurrency", po::value(&opts.concurrency)->default_value(opts.concurrency),
        "jobs running at once, at most")(
        "task-ms", po::value(&opts.task_ms)->default_value(opts.task_ms), "duration of one job")(
        "threads", po::value(&opts.threads)->default_value(opts.threads), "io threads");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, desc), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        std::cerr << "tame-example: " << e.what() << "\n" << desc;
        return 2;
    }
    if (vm.count("help") != 0) {
        std::cout << desc;
        return 0;
    }
    if (opts.tasks < 0 || opts.concurrency == 0 || opts.task_ms < 0 || opts.threads < 1) {
        std::cerr << "tame-example: tasks, task-ms >= 0; concurrency, threads >= 1\n";
        return 2;
    }

    asio::io_context io{opts.threads};
    tame::async_semaphore limit{io, opts.concurrency};
    tame::wait_group group{io};
    concurrency_meter meter;
    const auto start = std::chrono::steady_clock::now();
    std::chrono::steady_clock::duration elapsed{};

    group.add(static_cast<std::size_t>(opts.tasks));
    for (int i = 0; i < opts.tasks; ++i) {
        asio::co_spawn(io,
                       sync_one(limit, group, meter, std::chrono::milliseconds{opts.task_ms}),
                       asio::detached);
    }
    group.async_wait([&](tame::error_code) { elapsed = std::chrono::steady_clock::now() - start; });

    std::vector<std::thread> threads;
    for (int i = 1; i < opts.threads; ++i) {
        threads.emplace_back([&io] { io.run(); });
    }
    io.run();
    for (auto& t : threads) {
        t.join();
    }

    const auto stats = limit.stats();
    const double ideal_ms =
        std::ceil(static_cast<double>(opts.tasks) / static_cast<double>(opts.concurrency)) *
        opts.task_ms;
    std::printf("synced %d jobs, at most %zu at once: peak %d, %.1f ms (ideal %.1f ms)\n",
                opts.tasks, opts.concurrency, meter.peak.load(),
                std::chrono::duration<double, std::milli>(elapsed).count(), ideal_ms);
    std::printf("semaphore: %llu acquired, %llu waited, most waiting %zu, mean wait %.2f ms\n",
                static_cast<unsigned long long>(stats.acquired),
                static_cast<unsigned long long>(stats.waited), stats.max_waiting,
                stats.waited == 0
                    ? 0.0
                    : std::chrono::duration<double, std::milli>(stats.total_wait).count() /
                          static_cast<double>(stats.waited));
    return meter.peak.load() <= static_cast<int>(opts.concurrency) ? 0 : 1;
}
