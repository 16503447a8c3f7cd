#include <tame/adaptive_limit.hpp>
#include <tame/adaptive_shedder.hpp>
#include <tame/aimd_limit.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST_CASE("an adaptive limit moved by four threads' samples hands back every permit",
          "[stress][adaptive_limit]")
{
    asio::io_context io{4};
    tame::aimd_options o;
    o.initial_limit = 8;
    o.min_limit = 1;
    o.max_limit = 40;
    tame::adaptive_limit limit{io, tame::aimd_limit{o}};
    constexpr int coroutines = 200;
    constexpr int rounds = 200;
    std::atomic<int> finished{0};
    std::atomic<std::uint64_t> granted{0};
    std::atomic<std::uint64_t> successes{0};
    std::atomic<std::uint64_t> drops{0};
    std::atomic<std::uint64_t> ignores{0};
    std::atomic<int> over_limit{0};
    std::mutex errors_mutex;
    std::vector<std::string> errors;

    for (int c = 0; c < coroutines; ++c) {
        // Each on a strand of its own: the || below emits its cancellation from
        // the timer's completion, which must not race the acquire's (as for any
        // Asio operation on a multi-threaded io_context).
        asio::co_spawn(
            asio::make_strand(io),
            [&, c]() -> asio::awaitable<void> {
                auto ex = co_await asio::this_coro::executor;
                for (int r = 0; r < rounds; ++r) {
                    // Every seventh acquire gives up after a moment: cancellations
                    // race grants and capacity changes.
                    tame::adaptive_permit p;
                    if ((c + r) % 7 == 0) {
                        asio::steady_timer timer{ex, 50us};
                        using namespace asio::experimental::awaitable_operators;
                        auto result =
                            co_await (limit.async_acquire(asio::as_tuple(asio::use_awaitable)) ||
                                      timer.async_wait(asio::as_tuple(asio::use_awaitable)));
                        if (result.index() == 0) {
                            p = std::move(std::get<1>(std::get<0>(result)));
                        }
                    } else {
                        p = co_await limit.acquire();
                    }
                    if (!p) {
                        continue;
                    }
                    ++granted;
                    // 40 is the most the limit can be: never more held at once.
                    if (limit.in_flight() > 40) {
                        ++over_limit;
                    }
                    co_await asio::post(ex, asio::use_awaitable);
                    switch ((c * 31 + r) % 5) {
                    case 0:
                        p.dropped();
                        ++drops;
                        break;
                    case 1:
                        p.ignore();
                        ++ignores;
                        break;
                    default:
                        p.success();
                        ++successes;
                        break;
                    }
                }
                ++finished;
            },
            [&](std::exception_ptr e) {
                if (e) {
                    try {
                        std::rethrow_exception(e);
                    } catch (const std::exception& ex) {
                        std::lock_guard lock{errors_mutex};
                        errors.push_back(ex.what());
                    }
                }
            });
    }
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&io] { io.run(); });
    }
    for (auto& t : threads) {
        t.join();
    }
    const auto s = limit.stats();

    CHECK(errors == std::vector<std::string>{});
    CHECK(finished == coroutines);
    CHECK(over_limit == 0);
    CHECK(limit.in_flight() == 0);
    CHECK(limit.waiting() == 0);
    CHECK(s.succeeded == successes.load());
    CHECK(s.dropped == drops.load());
    // A grant that raced its acquire's timeout is given back unmarked by the
    // || that dropped it: ignored, and never seen here.
    CHECK(s.ignored >= ignores.load());
    CHECK(successes + drops + ignores == granted.load());
    CHECK(limit.semaphore().available() == limit.limit());
    CHECK(limit.limit() >= 1);
    CHECK(limit.limit() <= 40);
}

TEST_CASE("a shedder shared by four threads counts every request once", "[stress][shedder]")
{
    std::atomic<unsigned> cpu{0};
    tame::shedder_options o;
    o.cpu_usage = [&cpu] { return cpu.load(); };
    tame::adaptive_shedder shedder{o};
    constexpr int requests = 20000;
    std::atomic<std::uint64_t> refused{0};

    std::vector<std::thread> pool;
    for (int t = 0; t < 4; ++t) {
        pool.emplace_back([&, t] {
            std::vector<tame::adaptive_shedder::ticket> held;
            for (int i = 0; i < requests; ++i) {
                if (t == 0 && i % 1000 == 0) {
                    cpu = cpu.load() == 0 ? 1000 : 0;
                }
                auto ticket = shedder.allow();
                if (!ticket) {
                    ++refused;
                    continue;
                }
                held.push_back(std::move(ticket));
                if (held.size() > 20) {
                    for (std::size_t k = 0; k < held.size(); ++k) {
                        k % 2 == 0 ? held[k].pass() : held[k].fail();
                    }
                    held.clear();
                }
            }
        });
    }
    for (auto& t : pool) {
        t.join();
    }
    const auto s = shedder.stats();

    CHECK(s.in_flight == 0);
    CHECK(s.shed == refused.load());
}
