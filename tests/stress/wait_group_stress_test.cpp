#include <tame/wait_group.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

namespace asio = boost::asio;

TEST_CASE("a wait completes exactly once after work ends on many threads",
          "[stress][wait_group]")
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
