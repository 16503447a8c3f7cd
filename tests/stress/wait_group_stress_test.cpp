#include <tame/wait_group.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

namespace asio = boost::asio;

TEST_CASE("a wait completes exactly once after work ends on many threads", "[stress][wait_group]")
{
    constexpr int tasks = 20000;
    asio::io_context io{2};
    tame::wait_group group{io};
    std::atomic<int> ran{0};
    std::atomic<int> completions{0};
    int ran_at_completion = -1;

    group.add(tasks);
    group.async_wait([&](tame::error_code ec) {
        CHECK_FALSE(ec);
        ran_at_completion = ran.load();
        ++completions;
    });
    for (int i = 0; i < tasks; ++i) {
        asio::post(io, [&] {
            ++ran;
            group.done();
        });
    }
    std::thread second{[&] { io.run(); }};
    io.run();
    second.join();

    CHECK(completions == 1);
    CHECK(ran_at_completion == tasks);
    CHECK(group.count() == 0);
}

TEST_CASE("a wait_group may be destroyed by a waiter that saw its count reach zero",
          "[stress][wait_group]")
{
    // done() on one thread takes the count to zero while a wait starts on
    // another, completes, and destroys the group: done() must not touch the
    // group after that (ASan and TSan see it if it does).
    int completed = 0;
    for (int i = 0; i < 2000; ++i) {
        asio::io_context io;
        auto* group = new tame::wait_group{io};
        group->add(1);
        std::atomic<bool> go{false};
        std::thread worker{[&] {
            while (!go.load()) {
            }
            group->done();
        }};
        go = true;
        while (group->count() != 0) {
        }
        group->async_wait([&](tame::error_code) {
            delete group;
            ++completed;
        });
        io.run();
        worker.join();
    }
    CHECK(completed == 2000);
}
