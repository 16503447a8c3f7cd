#include <tame/breaker.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

TEST_CASE("a breaker shared by four threads counts every call exactly once", "[stress][breaker]")
{
    tame::breaker b;
    constexpr int threads = 4;
    constexpr int calls = 50000;
    std::atomic<std::uint64_t> let_through{0};
    std::atomic<std::uint64_t> refused{0};

    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            for (int i = 0; i < calls; ++i) {
                auto guard = b.allow();
                if (!guard) {
                    ++refused;
                    continue;
                }
                ++let_through;
                // Thread 0 sees a healthy upstream, the others a failing one.
                if (t == 0) {
                    guard.success();
                } else {
                    guard.failure();
                }
            }
        });
    }
    for (auto& t : pool) {
        t.join();
    }
    const auto s = b.stats();

    CHECK(s.accepted + s.failed == let_through.load());
    CHECK(s.dropped == refused.load());
    CHECK(s.accepted + s.failed + s.dropped == std::uint64_t{threads} * calls);
    CHECK(s.dropped > 0); // three failing callers in four open it
    CHECK(s.drop_probability >= 0);
    CHECK(s.drop_probability < 1);
}
