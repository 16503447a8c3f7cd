#include <tame/http/client.hpp>

#include <tame/deadline.hpp>
#include <tame/http/json.hpp>
#include <tame/http/request_context.hpp>

#include <tame_test/eventually.hpp>
#include <tame_test/http_harness.hpp>
#include <tame_test/manual_clock.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/http/error.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <functional>
#include <future>

namespace asio = boost::asio;
namespace http = tame::http;
using namespace std::chrono_literals;
using tame_test::test_server;

namespace {

http::router echo_routes()
{
    http::router routes;
    routes.get("/hello", [](http::request_context& ctx) -> asio::awaitable<http::response> {
        co_return http::json_response(boost::json::object{{"query", ctx.query("q").value_or("")}});
    });
    routes.post("/echo", [](http::request_context& ctx) -> asio::awaitable<http::response> {
        http::response res{http::status::created, 11, ctx.request().body()};
        res.set("X-Method", ctx.request().method_string());
        co_return res;
    });
    return routes;
}

/// A listener that answers every connection with `reply`, then closes.
class fake_upstream {
  public:
    explicit fake_upstream(std::string reply) : reply_{std::move(reply)}
    {
        acceptor_.listen();
        thread_ = std::thread{[this] {
            boost::system::error_code ec;
            tcp::socket s{io_};
            acceptor_.accept(s, ec);
            if (ec) {
                return;
            }
            char buf[4096];
            s.read_some(asio::buffer(buf), ec);
            asio::write(s, asio::buffer(reply_), ec);
            s.shutdown(tcp::socket::shutdown_both, ec);
        }};
    }
    ~fake_upstream()
    {
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        thread_.join();
    }
    std::string url() const
    {
        return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/";
    }

  private:
    using tcp = asio::ip::tcp;
    asio::io_context io_;
    tcp::acceptor acceptor_{io_, {asio::ip::make_address("127.0.0.1"), 0}};
    std::string reply_;
    std::thread thread_;
};

using outcome = std::pair<tame::error_code, http::response>;

/// A callback that fulfils a promise, for calls from the test's thread.
auto fulfil(std::shared_ptr<std::promise<outcome>> p)
{
    return [p](tame::error_code ec, http::response res) { p->set_value({ec, std::move(res)}); };
}

outcome wait(std::shared_ptr<std::promise<outcome>> p)
{
    auto f = p->get_future();
    REQUIRE(f.wait_for(20s) == std::future_status::ready);
    return f.get();
}

/// Runs `io` until `done()` holds; false if 10 s passed first (the server's
/// threads, and the kernel, bring what it waits for).
bool run_until(asio::io_context& io, const std::function<bool()>& done)
{
    io.restart();
    return tame_test::eventually([&] {
        io.poll();
        io.restart();
        return done();
    });
}

outcome get(asio::io_context& io, const std::string& url)
{
    auto p = std::make_shared<std::promise<outcome>>();
    http::async_get(io.get_executor(), url, fulfil(p));
    return wait(p);
}

} // namespace

TEST_CASE("async_get fetches a response from the server", "[http][client]")
{
    test_server server{echo_routes()};

    auto [ec, res] = get(server.io(), server.url("/hello?q=a%20b"));

    REQUIRE_FALSE(ec);
    CHECK(res.result() == http::status::ok);
    CHECK(res.body() == R"({"query":"a b"})");
}

TEST_CASE("async_request sends its method and body", "[http][client]")
{
    test_server server{echo_routes()};
    http::request req{http::verb::post, "/ignored", 11};
    req.body() = "payload";

    auto p = std::make_shared<std::promise<outcome>>();
    http::async_request(server.io().get_executor(), server.url("/echo"), req, fulfil(p));
    auto [ec, res] = wait(p);

    REQUIRE_FALSE(ec);
    CHECK(res.result() == http::status::created);
    CHECK(res.body() == "payload");
    CHECK(res["X-Method"] == "POST");
}

TEST_CASE("a URL that does not parse fails with invalid_url, after the call returns",
          "[http][client]")
{
    asio::io_context io;
    std::optional<tame::error_code> result;

    http::async_get(io.get_executor(), "not a url",
                    [&](tame::error_code ec, http::response) { result = ec; });
    REQUIRE_FALSE(result);
    io.run();

    CHECK(result == tame::error_code{tame::errc::invalid_url});
}

TEST_CASE("an https URL fails with unsupported_scheme", "[http][client]")
{
    asio::io_context io;
    std::optional<tame::error_code> result;

    http::async_get(io.get_executor(), "https://example.org/",
                    [&](tame::error_code ec, http::response) { result = ec; });
    io.run();

    CHECK(result == tame::error_code{tame::errc::unsupported_scheme});
}

TEST_CASE("a refused connection fails with connection_refused", "[http][client]")
{
    asio::io_context io;
    std::uint16_t port = 0;
    {
        asio::ip::tcp::acceptor probe{io, {asio::ip::make_address("127.0.0.1"), 0}};
        port = probe.local_endpoint().port();
    }

    auto [ec, res] = [&] {
        std::optional<std::pair<tame::error_code, http::response>> r;
        http::async_get(io.get_executor(), "http://127.0.0.1:" + std::to_string(port) + "/",
                        [&](tame::error_code e, http::response m) { r.emplace(e, std::move(m)); });
        io.run();
        return std::move(*r);
    }();

    CHECK(ec == asio::error::connection_refused);
}

TEST_CASE("a malformed response fails with the parser's error", "[http][client]")
{
    fake_upstream upstream{"HTTP/1.1 banana\r\n\r\n"};
    asio::io_context io;
    std::optional<tame::error_code> result;

    http::async_get(io.get_executor(), upstream.url(),
                    [&](tame::error_code ec, http::response) { result = ec; });
    io.run();

    REQUIRE(result);
    CHECK(result->category() ==
          boost::beast::http::make_error_code(boost::beast::http::error::bad_status).category());
}

TEST_CASE("a response body over the limit fails with body_limit", "[http][client]")
{
    fake_upstream upstream{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" +
                           std::string(100, 'x')};
    asio::io_context io;
    std::optional<tame::error_code> result;

    http::async_request(io.get_executor(), upstream.url(), http::request{http::verb::get, "/", 11},
                        http::client_options{.body_limit = 10},
                        [&](tame::error_code ec, http::response) { result = ec; });
    io.run();

    CHECK(result == boost::beast::http::error::body_limit);
}

TEST_CASE("a client timeout closes the socket, and the server's handler sees its client leave",
          "[http][client]")
{
    auto outcome = std::make_shared<std::promise<http::cancel_reason>>();
    auto started = std::make_shared<std::atomic<bool>>(false);
    http::router routes;
    routes.get("/slow",
               [outcome, started](http::request_context& ctx) -> asio::awaitable<http::response> {
                   *started = true;
                   asio::steady_timer timer{ctx.get_executor(), 60s};
                   co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
                   outcome->set_value(ctx.cancel_reason());
                   co_return http::response{};
               });
    test_server server{std::move(routes)};
    asio::io_context io;
    std::optional<tame::error_code> result;
    using clock = tame_test::manual_clock;
    http::async_get(io.get_executor(), server.url("/slow"),
                    tame::cancel_at(clock::now() + 200ms,
                                    [&](tame::error_code ec, http::response) { result = ec; }));
    // The request has reached its handler, which will not answer.
    REQUIRE(run_until(io, [&] { return started->load(); }));
    CHECK_FALSE(result);

    clock::advance(200ms);
    REQUIRE(run_until(io, [&] { return result.has_value(); }));
    auto seen = outcome->get_future();

    CHECK(result == asio::error::operation_aborted);
    REQUIRE(seen.wait_for(10s) == std::future_status::ready);
    CHECK(seen.get() == http::cancel_reason::client_gone);
}

TEST_CASE("the client completes on the handler's associated executor", "[http][client]")
{
    test_server server{echo_routes()};
    asio::io_context io;
    auto strand = asio::make_strand(io);
    bool on_strand = false;

    http::async_get(io.get_executor(), server.url("/hello"),
                    asio::bind_executor(strand, [&](tame::error_code ec, http::response) {
                        CHECK_FALSE(ec);
                        on_strand = strand.running_in_this_thread();
                    }));
    io.run();

    CHECK(on_strand);
}

TEST_CASE("the client works with deferred and from a coroutine", "[http][client]")
{
    test_server server{echo_routes()};
    asio::io_context io;
    std::string body;

    auto op = http::async_get(io.get_executor(), server.url("/hello?q=x"), asio::deferred);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto [ec, res] = co_await std::move(op)(asio::as_tuple(asio::use_awaitable));
            body = res.body();
        },
        asio::detached);
    io.run();

    CHECK(body == R"({"query":"x"})");
}

TEST_CASE("the client keeps work on the handler's executor until it completes", "[http][client]")
{
    test_server server{echo_routes()};
    asio::io_context io_ops;
    asio::io_context io_handler;
    std::atomic<bool> called{false};

    http::async_get(io_ops.get_executor(), server.url("/hello"),
                    asio::bind_executor(io_handler.get_executor(),
                                        [&](tame::error_code, http::response) { called = true; }));
    std::thread ops{[&] { io_ops.run(); }};
    io_handler.run(); // as with any Asio operation, it waits for the handler
    const bool ran_before_return = called.load();
    ops.join();

    CHECK(ran_before_return);
}
