#include <tame/http/server.hpp>

#include <tame/http/json.hpp>
#include <tame/http/request_context.hpp>

#include <tame_test/eventually.hpp>
#include <tame_test/http_harness.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>

namespace asio = boost::asio;
namespace http = tame::http;
using namespace std::chrono_literals;
using tame_test::raw_client;
using tame_test::request_text;
using tame_test::test_options;
using tame_test::test_server;

namespace {

struct counters {
    std::atomic<int> handled{0};
    std::atomic<int> cancelled{0};

    /// The ids of the /leave/{id} requests whose handlers have started.
    bool has_started(const std::string& id)
    {
        const std::lock_guard lock{mutex};
        return started.count(id) == 1;
    }
    std::mutex mutex;
    std::set<std::string> started;
};

http::router stress_routes(counters& seen)
{
    http::router routes;
    routes.get("/hello", [&seen](http::request_context&) -> asio::awaitable<http::response> {
        ++seen.handled;
        co_return http::response{http::status::ok, 11, "hello"};
    });
    routes.get(
        "/sleep/{ms}", [&seen](http::request_context& ctx) -> asio::awaitable<http::response> {
            asio::steady_timer timer{ctx.get_executor(),
                                     std::chrono::milliseconds{std::stoi(ctx.path_param("ms"))}};
            auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
            if (ec) {
                ++seen.cancelled;
                throw boost::system::system_error{ec};
            }
            ++seen.handled;
            co_return http::json_response(boost::json::object{{"slept", ctx.path_param("ms")}});
        });
    // Waits until its client leaves (or the server stops).
    routes.get("/leave/{id}",
               [&seen](http::request_context& ctx) -> asio::awaitable<http::response> {
                   {
                       const std::lock_guard lock{seen.mutex};
                       seen.started.insert(std::string{ctx.path_param("id")});
                   }
                   asio::steady_timer timer{ctx.get_executor(), std::chrono::hours{1}};
                   auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
                   if (ec) {
                       ++seen.cancelled;
                       throw boost::system::system_error{ec};
                   }
                   ++seen.handled;
                   co_return http::response{http::status::ok, 11};
               });
    routes.get("/boom", [&seen](http::request_context&) -> asio::awaitable<http::response> {
        ++seen.handled;
        throw http::http_error{http::status::conflict, "boom"};
        co_return http::response{};
    });
    return routes;
}

} // namespace

TEST_CASE("clients on many threads get every answer from a multi-threaded server, leavers included",
          "[stress][http]")
{
    counters seen;
    auto options = test_options();
    options.max_in_flight = 100000;
    test_server server{stress_routes(seen), options, 3};
    constexpr int clients = 6;
    constexpr int requests = 150;
    std::atomic<int> answered{0};
    std::atomic<int> wrong{0};
    std::atomic<int> left{0};

    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
        threads.emplace_back([&, c] {
            std::mt19937 random{static_cast<unsigned>(c)};
            auto client = std::make_unique<raw_client>(server.port());
            for (int i = 0; i < requests; ++i) {
                const int kind = static_cast<int>(random() % 10);
                if (kind == 0) {
                    // Leave mid-handler; the server must cancel and carry on.
                    const auto id = std::to_string(c) + "-" + std::to_string(i);
                    client->send(request_text("GET", "/leave/" + id));
                    if (!tame_test::eventually([&] { return seen.has_started(id); })) {
                        ++wrong;
                    }
                    client->close();
                    client = std::make_unique<raw_client>(server.port());
                    ++left;
                    continue;
                }
                const std::string target = kind < 5   ? "/hello"
                                           : kind < 8 ? "/sleep/" + std::to_string(kind - 4)
                                                      : "/boom";
                client->send(request_text("GET", target));
                auto res = client->read_response();
                if (!res) {
                    ++wrong;
                    client = std::make_unique<raw_client>(server.port());
                    continue;
                }
                const auto expected = kind < 8 ? http::status::ok : http::status::conflict;
                wrong += res->result() == expected ? 0 : 1;
                ++answered;
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    const auto cancelled_at_shutdown = server.shutdown(5s);

    CHECK(wrong == 0);
    CHECK(answered + left == clients * requests);
    REQUIRE(cancelled_at_shutdown);
    // Every leaver's handler was cancelled, by its client leaving or at the latest
    // by the shutdown; none completed.
    CHECK(seen.cancelled == left);
    CHECK(seen.handled == answered);
    CHECK(server.server().metrics().in_flight() == 0);
    CHECK(server.server().metrics().connections() == 0);
}

TEST_CASE("a shutdown under load answers every request it accepted", "[stress][http]")
{
    counters seen;
    auto options = test_options();
    options.max_in_flight = 100000;
    test_server server{stress_routes(seen), options, 3};
    constexpr int clients = 6;
    std::atomic<int> sent{0};
    std::atomic<int> answered{0};
    std::atomic<bool> stop{false};

    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
        threads.emplace_back([&] {
            while (!stop) {
                std::unique_ptr<raw_client> client;
                try {
                    client = std::make_unique<raw_client>(server.port());
                } catch (const boost::system::system_error&) {
                    return; // refused: the server has stopped listening
                }
                for (int i = 0; i < 20 && !stop; ++i) {
                    try {
                        client->send(request_text("GET", "/sleep/5"));
                    } catch (const boost::system::system_error&) {
                        break;
                    }
                    ++sent;
                    auto res = client->read_response();
                    if (!res) {
                        --sent; // closed before the request was read: not accepted
                        break;
                    }
                    answered += res->result() == http::status::ok ? 1 : 0;
                    if (!res->keep_alive()) {
                        break;
                    }
                }
            }
        });
    }
    // Under load: the clients have had 50 answers each, on average.
    REQUIRE(tame_test::eventually([&] { return answered >= clients * 50; }));
    const auto cancelled = server.shutdown(10s);
    stop = true;
    for (auto& t : threads) {
        t.join();
    }

    REQUIRE(cancelled);
    CHECK(*cancelled == 0u);
    CHECK(answered == sent);
    CHECK(seen.handled == answered);
}
