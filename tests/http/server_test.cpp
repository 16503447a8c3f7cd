#include <tame/http/server.hpp>

#include <tame/http/json.hpp>
#include <tame/http/request_context.hpp>
#include <tame/manual_time.hpp>
#include <tame/semaphore.hpp>
#include <tame/time_source.hpp>

#include <tame_test/eventually.hpp>
#include <tame_test/http_harness.hpp>
#include <tame_test/prometheus_text.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

namespace asio = boost::asio;
namespace http = tame::http;
using namespace std::chrono_literals;
using tame_test::eventually;
using tame_test::raw_client;
using tame_test::request_text;
using tame_test::stepped_server;
using tame_test::test_options;
using tame_test::test_server;

namespace {

http::handler text(std::string body)
{
    return [body](http::request_context&) -> asio::awaitable<http::response> {
        http::response res{http::status::ok, 11};
        res.set(http::field::content_type, "text/plain");
        res.body() = body;
        co_return res;
    };
}

/// A handler that waits `wait` on `time` (the steady clock, or a test's
/// manual_time), recording how the wait ended.
struct sleeping_handler {
    std::chrono::milliseconds wait;
    std::shared_ptr<tame::time_source> time = tame::steady_time();
    std::shared_ptr<std::promise<http::cancel_reason>> outcome =
        std::make_shared<std::promise<http::cancel_reason>>();
    std::shared_future<http::cancel_reason> ended = outcome->get_future().share();
    std::shared_ptr<std::atomic<int>> started = std::make_shared<std::atomic<int>>(0);

    http::handler get() const
    {
        return [wait = wait, time = time, outcome = outcome,
                started = started](http::request_context& ctx) -> asio::awaitable<http::response> {
            ++*started;
            auto [ec] = co_await time->async_wait_until(ctx.get_executor(), time->now() + wait,
                                                        asio::as_tuple(asio::use_awaitable));
            outcome->set_value(ctx.cancel_reason());
            if (ec) {
                throw boost::system::system_error{ec};
            }
            co_return http::json_response(boost::json::object{{"slept", wait.count()}});
        };
    }

    /// Whether the wait has ended, by its time or by a cancellation; never waits.
    bool has_ended() const { return ended.wait_for(0s) == std::future_status::ready; }

    /// Why the wait ended (cancel_reason::none: its time came); nothing if it
    /// has not ended within `limit`.
    std::optional<http::cancel_reason> result(std::chrono::seconds limit = 10s) const
    {
        if (ended.wait_for(limit) != std::future_status::ready) {
            return std::nullopt;
        }
        return ended.get();
    }
};

/// Answers with the request's body.
http::handler echo()
{
    return [](http::request_context& ctx) -> asio::awaitable<http::response> {
        co_return http::response{http::status::ok, 11, ctx.request().body()};
    };
}

std::string error_of(const http::response& res)
{
    return std::string{boost::json::parse(res.body()).at("error").as_string()};
}

} // namespace

TEST_CASE("a GET route answers with its handler's response", "[http][server]")
{
    test_server server{http::router{}.get("/hello", text("hello, world"))};
    raw_client client{server.port()};

    client.send(request_text("GET", "/hello"));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::ok);
    CHECK(res->body() == "hello, world");
    CHECK((*res)[http::field::content_length] == "12");
}

TEST_CASE("path parameters reach the handler percent-decoded", "[http][server]")
{
    http::router routes;
    routes.get("/jobs/{id}/files/{name}",
               [](http::request_context& ctx) -> asio::awaitable<http::response> {
                   co_return http::json_response(boost::json::object{
                       {"id", ctx.path_param("id")}, {"name", ctx.path_param("name")}});
               });
    test_server server{std::move(routes)};
    raw_client client{server.port()};

    client.send(request_text("GET", "/jobs/42/files/a%20b%2Fc"));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(boost::json::parse(res->body()) == boost::json::parse(R"({"id":"42","name":"a b/c"})"));
}

TEST_CASE("query parameters reach the handler percent-decoded", "[http][server]")
{
    http::router routes;
    routes.get("/diagnose", [](http::request_context& ctx) -> asio::awaitable<http::response> {
        co_return http::json_response(
            boost::json::object{{"symptoms", ctx.query("symptoms").value_or("<none>")},
                                {"flag", ctx.query("flag").value_or("<none>")},
                                {"missing", ctx.query("missing").value_or("<none>")}});
    });
    test_server server{std::move(routes)};
    raw_client client{server.port()};

    client.send(request_text("GET", "/diagnose?symptoms=fever%2C%20cough&flag"));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(boost::json::parse(res->body()) ==
          boost::json::parse(R"({"symptoms":"fever, cough","flag":"","missing":"<none>"})"));
}

TEST_CASE("a query with a malformed percent escape is answered 400 and the connection serves on",
          "[http][server]")
{
    http::router routes;
    routes.get("/diagnose", [](http::request_context& ctx) -> asio::awaitable<http::response> {
        co_return http::json_response(
            boost::json::object{{"symptoms", ctx.query("symptoms").value_or("")}});
    });
    test_server server{std::move(routes)};
    raw_client client{server.port()};

    client.send(request_text("GET", "/diagnose?symptoms=fever&flag=%zz"));
    auto bad = client.read_response();
    client.send(request_text("GET", "/diagnose?symptoms=fever"));
    auto good = client.read_response();

    REQUIRE(bad);
    CHECK(bad->result() == http::status::bad_request);
    CHECK(error_of(*bad).starts_with("malformed request target"));
    REQUIRE(good);
    CHECK(good->result() == http::status::ok);
}

TEST_CASE("an unknown path is answered 404 with a JSON error", "[http][server]")
{
    test_server server{http::router{}.get("/hello", text("hi"))};
    raw_client client{server.port()};

    client.send(request_text("GET", "/nowhere"));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::not_found);
    CHECK((*res)[http::field::content_type] == "application/json");
    CHECK(error_of(*res) == "no route for GET /nowhere");
}

TEST_CASE("a known path asked with another method is answered 405 with Allow", "[http][server]")
{
    http::router routes;
    routes.get("/reports", text("list")).post("/reports", text("made"));
    test_server server{std::move(routes)};
    raw_client client{server.port()};

    client.send(request_text("DELETE", "/reports"));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::method_not_allowed);
    CHECK((*res)[http::field::allow] == "GET, POST, HEAD");
    CHECK(error_of(*res) == "method DELETE not allowed for /reports");
}

TEST_CASE("a HEAD request gets the GET route's headers and no body", "[http][server]")
{
    test_server server{http::router{}.get("/hello", text("hello, world"))};
    raw_client client{server.port()};

    client.send(request_text("HEAD", "/hello") + request_text("GET", "/hello"));
    auto head = client.read_response(true);
    auto get = client.read_response();

    REQUIRE(head);
    CHECK(head->result() == http::status::ok);
    CHECK((*head)[http::field::content_length] == "12");
    CHECK(head->body().empty());
    REQUIRE(get);
    CHECK(get->body() == "hello, world");
}

TEST_CASE("an http_error thrown by a handler is answered with its status as JSON", "[http][server]")
{
    http::router routes;
    routes.post("/reports/generate",
                [](http::request_context& ctx) -> asio::awaitable<http::response> {
                    auto body = http::parse_json_object(ctx.request());
                    if (!body.contains("reportIds")) {
                        throw http::http_error{http::status::bad_request, "reportIds is missing"};
                    }
                    co_return http::json_response(body);
                });
    test_server server{std::move(routes)};
    raw_client client{server.port()};

    client.send(request_text("POST", "/reports/generate", "", "{not json"));
    auto bad_json = client.read_response();
    client.send(request_text("POST", "/reports/generate", "", R"({"other":1})"));
    auto missing = client.read_response();

    REQUIRE(bad_json);
    CHECK(bad_json->result() == http::status::bad_request);
    CHECK(error_of(*bad_json).starts_with("request body is not valid JSON"));
    REQUIRE(missing);
    CHECK(missing->result() == http::status::bad_request);
    CHECK(error_of(*missing) == "reportIds is missing");
}

TEST_CASE("a handler that throws is answered 500 and the connection keeps serving",
          "[http][server]")
{
    http::router routes;
    routes.get("/boom", [](http::request_context&) -> asio::awaitable<http::response> {
        throw std::runtime_error{"the report template is missing"};
        co_return http::response{};
    });
    routes.get("/hello", text("still here"));
    test_server server{std::move(routes)};
    raw_client client{server.port()};

    client.send(request_text("GET", "/boom"));
    auto boom = client.read_response();
    client.send(request_text("GET", "/hello"));
    auto hello = client.read_response();

    REQUIRE(boom);
    CHECK(boom->result() == http::status::internal_server_error);
    CHECK(error_of(*boom) == "internal server error");
    REQUIRE(hello);
    CHECK(hello->body() == "still here");
}

TEST_CASE("a kept-alive connection serves requests one after another", "[http][server]")
{
    test_server server{http::router{}.get("/hello", text("hi"))};
    raw_client client{server.port()};

    for (int i = 0; i < 3; ++i) {
        client.send(request_text("GET", "/hello"));
        auto res = client.read_response();
        REQUIRE(res);
        CHECK(res->keep_alive());
    }

    // The server records a request once its answer is written, just after the
    // client has it.
    CHECK(eventually([&] { return server.server().metrics().requests(0, 200) == 3; }));
    CHECK(server.server().metrics().connections() == 1);
}

TEST_CASE("pipelined requests are answered in the order they were sent", "[http][server]")
{
    http::router routes;
    routes.get("/slow", [](http::request_context& ctx) -> asio::awaitable<http::response> {
        asio::steady_timer timer{ctx.get_executor(), 50ms};
        co_await timer.async_wait(asio::use_awaitable);
        co_return http::response{http::status::ok, 11, "slow"};
    });
    routes.get("/fast", text("fast"));
    test_server server{std::move(routes)};
    raw_client client{server.port()};

    client.send(request_text("GET", "/slow") + request_text("GET", "/fast") +
                request_text("GET", "/slow"));
    auto first = client.read_response();
    auto second = client.read_response();
    auto third = client.read_response();

    REQUIRE(first);
    REQUIRE(second);
    REQUIRE(third);
    CHECK(first->body() == "slow");
    CHECK(second->body() == "fast");
    CHECK(third->body() == "slow");
}

TEST_CASE("an HTTP/1.0 request is answered in HTTP/1.0 and its connection closed", "[http][server]")
{
    test_server server{http::router{}.get("/hello", text("hi"))};
    raw_client client{server.port()};

    client.send("GET /hello HTTP/1.0\r\n\r\n");
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->version() == 10);
    CHECK(res->body() == "hi");
    CHECK(client.closed_by_server());
}

TEST_CASE("an HTTP/1.0 request asking for keep-alive keeps its connection", "[http][server]")
{
    test_server server{http::router{}.get("/hello", text("hi"))};
    raw_client client{server.port()};

    client.send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    auto first = client.read_response();
    client.send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    auto second = client.read_response();

    REQUIRE(first);
    CHECK(first->keep_alive());
    REQUIRE(second);
    CHECK(second->body() == "hi");
}

TEST_CASE("a body over the limit is answered 413 and the connection closed", "[http][server]")
{
    auto options = test_options();
    options.body_limit = 1000;
    test_server server{http::router{}.post("/upload", text("stored")), options};
    raw_client client{server.port()};

    client.send(request_text("POST", "/upload", "", std::string(1001, 'x')));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::payload_too_large);
    CHECK(error_of(*res) == "request body larger than 1000 bytes");
    CHECK(client.closed_by_server());
}

TEST_CASE("a chunked body over the limit is answered 413", "[http][server]")
{
    auto options = test_options();
    options.body_limit = 10;
    test_server server{http::router{}.post("/upload", text("stored")), options};
    raw_client client{server.port()};

    client.send(request_text("POST", "/upload", "Transfer-Encoding: chunked\r\n") +
                "8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n");
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::payload_too_large);
}

TEST_CASE("a chunked body whose last chunk arrives a byte at a time reaches the handler",
          "[http][server]")
{
    // Beast 1.81's parser asserts when the final chunk grows by one byte after
    // "0\r\n"; the server must not hand it that (see read_body.hpp).
    stepped_server server{http::router{}.post("/echo", echo())};
    auto client = server.connect();

    client.send(request_text("POST", "/echo", "Transfer-Encoding: chunked\r\n") +
                "5\r\nhello\r\n0\r\n");
    server.poll();
    client.send("\r");
    server.poll();
    client.send("\n");
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::ok);
    CHECK(res->body() == "hello");
}

TEST_CASE("a body that comes with the last bytes of a header sent in parts reaches the handler",
          "[http][server]")
{
    stepped_server server{http::router{}.post("/echo", echo())};
    auto client = server.connect();
    const auto request = request_text("POST", "/echo", "", "whole");

    client.send(request.substr(0, 10));
    server.poll();
    client.send(request.substr(10));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->body() == "whole");
}

TEST_CASE("a chunked request cut off inside its last chunk is closed unanswered and the server "
          "goes on",
          "[http][server]")
{
    test_server server{http::router{}.post("/echo", echo())};
    raw_client cut{server.port()};

    cut.send(request_text("POST", "/echo", "Transfer-Encoding: chunked\r\n") + "0\r\nx");
    cut.shutdown_send();
    const bool closed = cut.closed_by_server();
    raw_client good{server.port()};
    good.send(request_text("POST", "/echo", "", "next"));
    auto after = good.read_response();

    CHECK(closed);
    REQUIRE(after);
    CHECK(after->body() == "next");
}

TEST_CASE("a chunk line that never ends is answered 400 once it outgrows the header limit",
          "[http][server]")
{
    auto options = test_options();
    options.header_limit = 1024;
    test_server server{http::router{}.post("/echo", echo()), options};
    raw_client client{server.port()};

    client.send(request_text("POST", "/echo", "Transfer-Encoding: chunked\r\n") +
                "5;ext=" + std::string(4000, 'x'));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::bad_request);
    CHECK(client.closed_by_server());
}

TEST_CASE("a body within the limit reaches the handler", "[http][server]")
{
    auto options = test_options();
    options.body_limit = 1000;
    test_server server{http::router{}.post("/echo", echo()), options};
    raw_client client{server.port()};

    client.send(request_text("POST", "/echo", "", std::string(1000, 'x')));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->body() == std::string(1000, 'x'));
}

TEST_CASE("headers over the limit are answered 431 and the connection closed", "[http][server]")
{
    auto options = test_options();
    options.header_limit = 1024;
    test_server server{http::router{}.get("/hello", text("hi")), options};
    raw_client client{server.port()};

    client.send(request_text("GET", "/hello", "X-Padding: " + std::string(2000, 'p') + "\r\n"));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::request_header_fields_too_large);
    CHECK(client.closed_by_server());
}

TEST_CASE("a malformed request is answered 400, its connection closed, and the server goes on",
          "[http][server]")
{
    test_server server{http::router{}.get("/hello", text("hi"))};
    raw_client bad{server.port()};

    bad.send("GET /hello HTTP/1.1\r\nHost: test\r\nContent-Length: banana\r\n\r\n");
    auto res = bad.read_response();
    raw_client good{server.port()};
    good.send(request_text("GET", "/hello"));
    auto after = good.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::bad_request);
    CHECK(error_of(*res).starts_with("malformed request"));
    CHECK(bad.closed_by_server());
    REQUIRE(after);
    CHECK(after->body() == "hi");
}

TEST_CASE("a Transfer-Encoding that does not end in chunked is answered 400 and the bytes after it "
          "are not served",
          "[http][server]")
{
    test_server server{http::router{}.post("/hello", text("hi")).get("/hello", text("hi"))};

    for (const auto* coding : {"gzip", "chunked, gzip", "identity"}) {
        raw_client client{server.port()};
        // Read as a bodiless request, the body would be served as a second one.
        client.send(std::string{"POST /hello HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: "} +
                    coding + "\r\n\r\nGET /hello HTTP/1.1\r\nHost: smuggled\r\n\r\n");
        auto res = client.read_response();

        REQUIRE(res);
        CHECK(res->result() == http::status::bad_request);
        CHECK(error_of(*res).starts_with("malformed request"));
        CHECK(client.closed_by_server());
    }
}

TEST_CASE("an HTTP/1.0 request with Transfer-Encoding is answered 400 and its connection closed",
          "[http][server]")
{
    test_server server{http::router{}.post("/hello", text("hi")).get("/hello", text("hi"))};
    raw_client client{server.port()};

    client.send(
        "POST /hello HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\n{}\r\n0\r\n\r\nGET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::bad_request);
    CHECK(client.closed_by_server());
}

TEST_CASE("a request line that is not HTTP is answered 400", "[http][server]")
{
    test_server server{http::router{}.get("/hello", text("hi"))};
    raw_client client{server.port()};

    client.send("\x16\x03\x01 this is not http\r\n\r\n");
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::bad_request);
    CHECK(client.closed_by_server());
}

TEST_CASE("Expect: 100-continue gets 100 Continue before the body is sent", "[http][server]")
{
    http::router routes;
    routes.post("/echo", [](http::request_context& ctx) -> asio::awaitable<http::response> {
        co_return http::response{http::status::ok, 11, ctx.request().body()};
    });
    test_server server{std::move(routes)};
    raw_client client{server.port()};

    client.send(
        "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    auto interim = client.read_response();
    client.send("hello");
    auto res = client.read_response();

    REQUIRE(interim);
    CHECK(interim->result() == http::status::continue_);
    REQUIRE(res);
    CHECK(res->body() == "hello");
}

TEST_CASE("Expect: 100-continue with a body over the limit is refused without reading it",
          "[http][server]")
{
    auto options = test_options();
    options.body_limit = 10;
    test_server server{http::router{}.post("/upload", text("stored")), options};
    raw_client client{server.port()};

    client.send("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000\r\nExpect: "
                "100-continue\r\n\r\n");
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::payload_too_large);
}

TEST_CASE("an Expect other than 100-continue is answered 417", "[http][server]")
{
    test_server server{http::router{}.post("/upload", text("stored"))};
    raw_client client{server.port()};

    client.send(
        "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: teapot\r\n\r\n");
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::expectation_failed);
}

TEST_CASE("a connection that sends nothing is closed once the header timeout has passed",
          "[http][server]")
{
    auto options = test_options();
    options.header_timeout = 5s;
    stepped_server server{http::router{}.get("/hello", text("hi")), options};
    auto client = server.connect();
    // Accepted: its header timeout runs from now.
    REQUIRE(server.run_until([&] { return server.server().metrics().connections() == 1; }));

    server.advance(5s - 1ms);
    CHECK(server.server().metrics().connections() == 1);
    CHECK(client.nothing_arrived());
    // The sweep after the deadline closes it: a timeout fires at most a tenth late.
    server.advance(500ms);

    CHECK(server.server().metrics().connections() == 0);
    CHECK(client.closed_by_server());
}

TEST_CASE("a client sending its headers too slowly is disconnected at the header timeout "
          "(slowloris)",
          "[http][server]")
{
    auto options = test_options();
    options.header_timeout = 3s;
    stepped_server server{http::router{}.get("/hello", text("hi")), options};
    auto client = server.connect();
    const std::string request =
        request_text("GET", "/hello", "X-Slow: " + std::string(200, 's') + "\r\n");
    client.send(request.substr(0, 1));
    REQUIRE(server.run_until([&] { return server.server().metrics().connections() == 1; }));

    // One header byte every 100 ms: each keeps coming, none extends the timeout.
    for (std::size_t i = 1; i < 30; ++i) {
        server.advance(100ms);
        client.send(request.substr(i, 1));
        server.poll();
        REQUIRE(server.server().metrics().connections() == 1);
    }
    CHECK(client.nothing_arrived());
    server.advance(100ms + 300ms); // 3 s since the first byte, and a tenth

    CHECK(server.server().metrics().connections() == 0);
    CHECK(client.closed_by_server());
}

TEST_CASE("an idle kept-alive connection is closed once the idle timeout has passed",
          "[http][server]")
{
    auto options = test_options();
    options.idle_timeout = 5s;
    stepped_server server{http::router{}.get("/hello", text("hi")), options};
    auto client = server.connect();
    client.send(request_text("GET", "/hello"));
    auto res = client.read_response();
    REQUIRE(res);
    REQUIRE(res->keep_alive());

    // Idle from its answer on.
    server.advance(5s - 1ms);
    CHECK(server.server().metrics().connections() == 1);
    CHECK(client.nothing_arrived());
    server.advance(500ms);

    CHECK(server.server().metrics().connections() == 0);
    CHECK(client.closed_by_server());
}

TEST_CASE("a handler that outlives the request timeout is cancelled and answered 503",
          "[http][server]")
{
    auto options = test_options();
    options.request_timeout = 2s;
    auto time = std::make_shared<tame::manual_time>();
    sleeping_handler sleeper{60s, time};
    stepped_server server{http::router{}.get("/slow", sleeper.get()), options, time};
    auto client = server.connect();
    client.send(request_text("GET", "/slow"));
    REQUIRE(server.run_until([&] { return *sleeper.started == 1; }));

    server.advance(2s - 1ms);
    CHECK_FALSE(sleeper.has_ended());
    CHECK(client.nothing_arrived());
    server.advance(200ms);
    auto res = client.read_response();

    CHECK(sleeper.result() == http::cancel_reason::deadline);
    REQUIRE(res);
    CHECK(res->result() == http::status::service_unavailable);
    CHECK(error_of(*res) == "request deadline exceeded");
}

TEST_CASE("requests over the in-flight cap are answered 503 with Retry-After", "[http][server]")
{
    auto options = test_options();
    options.max_in_flight = 1;
    options.retry_after = 7s;
    sleeping_handler sleeper{60s};
    test_server server{http::router{}.get("/slow", sleeper.get()).get("/hello", text("hi")),
                       options};
    raw_client busy{server.port()};
    raw_client shed{server.port()};

    busy.send(request_text("GET", "/slow"));
    REQUIRE(eventually([&] { return *sleeper.started == 1; }));
    shed.send(request_text("GET", "/hello"));
    auto res = shed.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::service_unavailable);
    CHECK((*res)[http::field::retry_after] == "7");
    CHECK(res->keep_alive());
}

TEST_CASE("connections over the limit wait in the backlog until one closes", "[http][server]")
{
    auto options = test_options();
    options.max_connections = 1;
    stepped_server server{http::router{}.get("/hello", text("hi")), options};
    auto first = server.connect();
    first.send(request_text("GET", "/hello"));
    REQUIRE(first.read_response());

    auto second = server.connect();
    second.send(request_text("GET", "/hello"));
    server.poll();
    // The server has done all it can: the second connection is still queued.
    CHECK(second.nothing_arrived());
    CHECK(server.server().metrics().connections() == 1);
    first.close();
    auto served = second.read_response();

    REQUIRE(served);
    CHECK(served->body() == "hi");
}

TEST_CASE("a client that disconnects mid-handler cancels the handler at the next sweep",
          "[http][server]")
{
    auto time = std::make_shared<tame::manual_time>();
    sleeping_handler sleeper{60s, time};
    stepped_server server{http::router{}.get("/slow", sleeper.get()), test_options(), time};
    auto client = server.connect();
    client.send(request_text("GET", "/slow"));
    REQUIRE(server.run_until([&] { return *sleeper.started == 1; }));

    client.close();
    server.poll();
    // A running handler is watched for its client leaving from the first sweep
    // that finds it, within 100 ms: quick handlers never pay for the watch.
    CHECK_FALSE(sleeper.has_ended());
    server.advance(100ms);

    REQUIRE(server.run_until([&] { return sleeper.has_ended(); }));
    CHECK(sleeper.result() == http::cancel_reason::client_gone);
    CHECK(server.run_until([&] { return server.server().metrics().requests(0, 499) == 1; }));
}

TEST_CASE("work bound to the context's cancellation source stops when the client leaves",
          "[http][server]")
{
    auto stopped = std::make_shared<std::promise<boost::system::error_code>>();
    auto started = std::make_shared<std::atomic<bool>>(false);
    http::router routes;
    routes.get("/bound",
               [stopped, started](http::request_context& ctx) -> asio::awaitable<http::response> {
                   // A timer on another executor, tied to the request only through the source.
                   auto timer = std::make_shared<asio::steady_timer>(ctx.get_executor(), 60s);
                   timer->async_wait(ctx.cancellation().bind(
                       [stopped, timer](boost::system::error_code ec) { stopped->set_value(ec); }));
                   *started = true;
                   asio::steady_timer wait{ctx.get_executor(), 60s};
                   co_await wait.async_wait(asio::use_awaitable);
                   co_return http::response{};
               });
    stepped_server server{std::move(routes)};
    auto client = server.connect();
    client.send(request_text("GET", "/bound"));
    REQUIRE(server.run_until([&] { return started->load(); }));
    auto result = stopped->get_future();

    client.close();
    server.advance(100ms); // the sweep that starts the watch for the client leaving

    REQUIRE(server.run_until([&] { return result.wait_for(0s) == std::future_status::ready; }));
    CHECK(result.get() == asio::error::operation_aborted);
}

TEST_CASE("a half-closed client still gets the answer of a handler that does not wait",
          "[http][server]")
{
    test_server server{http::router{}.get("/hello", text("hi"))};
    raw_client client{server.port()};

    client.send(request_text("GET", "/hello"));
    client.shutdown_send();
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->body() == "hi");
    CHECK(client.closed_by_server());
}

TEST_CASE("a shutdown lets requests in flight finish within the drain period and refuses new "
          "connections",
          "[http][server]")
{
    auto time = std::make_shared<tame::manual_time>();
    sleeping_handler sleeper{300ms, time};
    stepped_server server{http::router{}.get("/slow", sleeper.get()), test_options(), time};
    auto client = server.connect();
    client.send(request_text("GET", "/slow"));
    REQUIRE(server.run_until([&] { return *sleeper.started == 1; }));

    server.begin_shutdown(30s);
    boost::system::error_code refused;
    asio::io_context io;
    asio::ip::tcp::socket late{io};
    late.connect({asio::ip::make_address("127.0.0.1"), server.port()}, refused);
    CHECK(refused == asio::error::connection_refused);
    CHECK_FALSE(server.shutdown_result()); // the handler still runs
    server.advance(300ms);
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::ok);
    CHECK_FALSE(res->keep_alive());
    CHECK(sleeper.result() == http::cancel_reason::none);
    REQUIRE(server.run_until([&] { return server.shutdown_result().has_value(); }));
    CHECK(*server.shutdown_result() == 0u);
}

TEST_CASE("a shutdown closes idle kept-alive connections at once, not at the end of its drain "
          "period",
          "[http][server]")
{
    stepped_server server{http::router{}.get("/hello", text("hi"))};
    auto client = server.connect();
    client.send(request_text("GET", "/hello"));
    REQUIRE(client.read_response());

    server.begin_shutdown(30s);

    // The clock has not moved.
    REQUIRE(server.run_until([&] { return server.shutdown_result().has_value(); }));
    CHECK(*server.shutdown_result() == 0u);
    CHECK(client.closed_by_server());
}

TEST_CASE("a shutdown cancels the handlers still running when the drain period ends, not before",
          "[http][server]")
{
    auto time = std::make_shared<tame::manual_time>();
    sleeping_handler sleeper{60s, time};
    stepped_server server{http::router{}.get("/slow", sleeper.get()), test_options(), time};
    auto client = server.connect();
    client.send(request_text("GET", "/slow"));
    REQUIRE(server.run_until([&] { return *sleeper.started == 1; }));

    server.begin_shutdown(10s);
    server.advance(10s - 1ms);
    CHECK_FALSE(server.shutdown_result());
    CHECK_FALSE(sleeper.has_ended());
    CHECK(client.nothing_arrived());
    server.advance(1ms);
    auto res = client.read_response();

    CHECK(sleeper.result() == http::cancel_reason::shutdown);
    REQUIRE(res);
    CHECK(res->result() == http::status::service_unavailable);
    CHECK(error_of(*res) == "server is shutting down");
    REQUIRE(server.run_until([&] { return server.shutdown_result().has_value(); }));
    CHECK(*server.shutdown_result() == 1u);
}

TEST_CASE("a server stopped at once during a shutdown frees its state with its io_context",
          "[http][server]")
{
    // What a second SIGTERM does (shutdown_on_signals): stop() and io.stop()
    // while a graceful shutdown waits for a handler, then the server and the
    // io_context are destroyed. The routes live as long as the server's state;
    // a handler's capture tells whether anything still keeps it.
    auto capture = std::make_shared<int>(0);
    const std::weak_ptr<int> state_alive = capture;
    {
        asio::io_context io;
        sleeping_handler sleeper{60s};
        http::router routes;
        routes.get("/slow", [capture, slow = sleeper.get()](http::request_context& ctx) {
            return slow(ctx);
        });
        capture.reset();
        http::server server{io, std::move(routes), test_options()};
        server.start();
        std::thread runner{[&io] { io.run(); }};
        raw_client client{server.local_endpoint().port()};
        client.send(request_text("GET", "/slow"));
        CHECK(eventually([&] { return *sleeper.started == 1; }));

        server.async_shutdown(60s, [](std::size_t) {});
        CHECK(eventually([&] { return server.is_stopping(); }));
        server.stop();
        io.stop();
        runner.join();
    }

    CHECK(state_alive.expired());
}

TEST_CASE("/healthz answers ok", "[http][server]")
{
    test_server server{http::router{}};
    raw_client client{server.port()};

    client.send(request_text("GET", "/healthz"));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::ok);
    CHECK(boost::json::parse(res->body()) == boost::json::parse(R"({"status":"ok"})"));
}

TEST_CASE("the router's own /healthz replaces the built-in one", "[http][server]")
{
    test_server server{http::router{}.get("/healthz", text("mine"))};
    raw_client client{server.port()};

    client.send(request_text("GET", "/healthz"));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->body() == "mine");
}

TEST_CASE("/metrics is Prometheus text counting requests by route and status", "[http][server]")
{
    test_server server{http::router{}.get("/hello", text("hi"))};
    raw_client client{server.port()};
    client.send(request_text("GET", "/hello"));
    REQUIRE(client.read_response());
    client.send(request_text("GET", "/missing"));
    REQUIRE(client.read_response());

    client.send(request_text("GET", "/metrics"));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::ok);
    CHECK((*res)[http::field::content_type].starts_with("text/plain; version=0.0.4"));
    const auto& text = res->body();
    INFO(text);
    CHECK(tame_test::prometheus_problem(text) == "");
    CHECK(text.find("tame_http_requests_total{route=\"GET /hello\",code=\"200\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("tame_http_requests_total{route=\"unmatched\",code=\"404\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("tame_http_requests_in_flight 0\n") !=
          std::string::npos); // /metrics itself is not counted
    CHECK(text.find("tame_http_connections 1\n") != std::string::npos);
}

TEST_CASE("an access-log line is written for each request", "[http][server]")
{
    std::mutex mutex;
    std::vector<std::string> lines;
    auto options = test_options();
    options.access_log = [&](const http::access_entry& e) {
        std::lock_guard lock{mutex};
        lines.push_back(std::string{e.method} + " " + std::string{e.target} + " " +
                        std::to_string(e.status) + " " + std::to_string(e.bytes) +
                        (e.peer.address().is_loopback() ? " loopback" : " other"));
    };
    test_server server{http::router{}.get("/hello", text("hi")), options};
    raw_client client{server.port()};

    client.send(request_text("GET", "/hello?x=1"));
    REQUIRE(client.read_response());
    client.send(request_text("GET", "/missing"));
    REQUIRE(client.read_response());

    REQUIRE(eventually([&] {
        std::lock_guard lock{mutex};
        return lines.size() == 2;
    }));
    std::lock_guard lock{mutex};
    CHECK(lines[0] == "GET /hello?x=1 200 2 loopback");
    CHECK(lines[1].starts_with("GET /missing 404 "));
}

TEST_CASE("the access log and the latency histogram measure requests on the server's clock",
          "[http][server]")
{
    std::vector<std::chrono::nanoseconds> logged;
    auto options = test_options();
    options.access_log = [&](const http::access_entry& e) { logged.push_back(e.duration); };
    auto time = std::make_shared<tame::manual_time>();
    sleeping_handler sleeper{250ms, time};
    stepped_server server{http::router{}.get("/slow", sleeper.get()), options, time};
    auto client = server.connect();
    client.send(request_text("GET", "/slow"));
    REQUIRE(server.run_until([&] { return *sleeper.started == 1; }));

    server.advance(250ms);
    REQUIRE(client.read_response());

    REQUIRE(server.run_until([&] { return logged.size() == 1; }));
    CHECK(logged[0] == 250ms);
    CHECK(server.server().metrics().render().find(
              "tame_http_request_duration_seconds_sum{route=\"GET /slow\"} 0.25\n") !=
          std::string::npos);
}

TEST_CASE("start() reports a port that is already taken", "[http][server]")
{
    test_server first{http::router{}};
    asio::io_context io;
    auto options = test_options();
    options.port = first.port();
    http::server second{io, http::router{}, options};

    CHECK_THROWS_AS(second.start(), boost::system::system_error);
}

TEST_CASE("start() names an address that is not an IP address", "[http][server]")
{
    asio::io_context io;
    auto options = test_options();
    options.address = "localhost.invalid";
    http::server server{io, http::router{}, options};

    CHECK_THROWS_WITH(server.start(), Catch::Contains("'localhost.invalid' is not an IP address"));
}

TEST_CASE("a response written after the drain period still has its write timeout", "[http][server]")
{
    auto options = test_options();
    options.write_timeout = 3s;
    auto time = std::make_shared<tame::manual_time>();
    bool started = false;
    http::router routes;
    routes.get("/big", [&, time](http::request_context& ctx) -> asio::awaitable<http::response> {
        started = true;
        co_await time->async_wait_until(ctx.get_executor(), time->now() + 60s,
                                        asio::as_tuple(asio::use_awaitable));
        // Cancelled at the end of the drain period, it answers with what it has:
        // more than the socket buffers hold, to a client that never reads.
        http::response res{http::status::ok, 11};
        res.body().assign(64 * 1024 * 1024, 'x');
        co_return res;
    });
    stepped_server server{std::move(routes), options, time};
    auto client = server.connect();
    client.send(request_text("GET", "/big"));
    REQUIRE(server.run_until([&] { return started; }));
    server.begin_shutdown(1s);

    server.advance(1s); // the drain period ends: the answer starts, and stalls
    server.advance(3s - 1ms);
    CHECK_FALSE(server.shutdown_result());
    server.advance(300ms); // past the write timeout, and a tenth

    REQUIRE(server.run_until([&] { return server.shutdown_result().has_value(); }));
    CHECK(*server.shutdown_result() == 1u);
}

TEST_CASE("a 204 answer is sent without the body its handler gave it", "[http][server]")
{
    http::router routes;
    routes.get("/nothing", [](http::request_context&) -> asio::awaitable<http::response> {
        http::response res{http::status::no_content, 11};
        res.body() = "oops";
        co_return res;
    });
    test_server server{std::move(routes)};
    raw_client client{server.port()};

    client.send(request_text("GET", "/nothing") + request_text("GET", "/nothing"));
    auto first = client.read_response();
    auto second = client.read_response();

    REQUIRE(first);
    CHECK(first->result() == http::status::no_content);
    CHECK(first->body().empty());
    REQUIRE(second);
    CHECK(second->result() == http::status::no_content);
}

TEST_CASE("an http_error with a status that has no body is answered without one", "[http][server]")
{
    http::router routes;
    routes.get("/cached", [](http::request_context&) -> asio::awaitable<http::response> {
        throw http::http_error{http::status::not_modified, "not modified"};
        co_return http::response{};
    });
    test_server server{std::move(routes)};
    raw_client client{server.port()};

    client.send(request_text("GET", "/cached"));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::not_modified);
    CHECK(res->body().empty());
}

TEST_CASE("a shutdown does not count handlers cancelled before it began", "[http][server]")
{
    auto options = test_options();
    options.request_timeout = 1s;
    auto time = std::make_shared<tame::manual_time>();
    bool started = false;
    bool finished = false;
    bool cancelled = false;
    http::router routes;
    routes.get(
        "/stubborn", [&, time](http::request_context& ctx) -> asio::awaitable<http::response> {
            started = true;
            // Deaf to cancellation: it finishes its wait whatever happens.
            co_await time->async_wait_until(
                ctx.get_executor(), time->now() + 5s,
                asio::bind_cancellation_slot(asio::cancellation_slot{}, asio::use_awaitable));
            cancelled = ctx.is_cancelled();
            finished = true;
            co_return http::response{http::status::ok, 11};
        });
    stepped_server server{std::move(routes), options, time};
    auto client = server.connect();
    client.send(request_text("GET", "/stubborn"));
    REQUIRE(server.run_until([&] { return started; }));
    server.advance(1s + 100ms); // past the request deadline, which cancels it

    server.begin_shutdown(0ms);
    CHECK_FALSE(
        server.shutdown_result()); // the shutdown waits for the handler, which does not listen
    CHECK_FALSE(finished);
    server.advance(5s);

    REQUIRE(server.run_until([&] { return server.shutdown_result().has_value(); }));
    CHECK(*server.shutdown_result() == 0u);
    CHECK(finished);
    CHECK(cancelled);
}

TEST_CASE("HEAD of a chunked GET answer sends the header alone", "[http][server]")
{
    http::router routes;
    routes.get("/chunked", [](http::request_context&) -> asio::awaitable<http::response> {
        http::response res{http::status::ok, 11};
        res.body() = "hello";
        res.chunked(true);
        co_return res;
    });
    test_server server{std::move(routes)};
    raw_client client{server.port()};

    client.send(request_text("HEAD", "/chunked") + request_text("GET", "/chunked"));
    auto head = client.read_response(true);
    auto get = client.read_response();

    REQUIRE(head);
    CHECK(head->chunked());
    REQUIRE(get);
    CHECK(get->body() == "hello");
}

TEST_CASE("a handler's Connection: close closes the connection after its answer", "[http][server]")
{
    http::router routes;
    routes.get("/bye", [](http::request_context&) -> asio::awaitable<http::response> {
        http::response res{http::status::ok, 11};
        res.body() = "bye";
        res.keep_alive(false);
        co_return res;
    });
    test_server server{std::move(routes)};
    raw_client client{server.port()};

    client.send(request_text("GET", "/bye"));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK_FALSE(res->keep_alive());
    CHECK(client.closed_by_server());
}

TEST_CASE("an absolute-form request target is routed by its path", "[http][server]")
{
    test_server server{http::router{}.get("/hello", text("hi"))};
    raw_client client{server.port()};

    client.send(request_text("GET", "http://test/hello"));
    auto res = client.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::ok);
    CHECK(res->body() == "hi");
}

TEST_CASE("/healthz stays reachable when the in-flight cap is reached", "[http][server]")
{
    auto options = test_options();
    options.max_in_flight = 1;
    sleeping_handler sleeper{60s};
    test_server server{http::router{}.get("/slow", sleeper.get()), options};
    raw_client busy{server.port()};
    raw_client health{server.port()};

    busy.send(request_text("GET", "/slow"));
    REQUIRE(eventually([&] { return *sleeper.started == 1; }));
    health.send(request_text("GET", "/healthz"));
    auto res = health.read_response();

    REQUIRE(res);
    CHECK(res->result() == http::status::ok);
}

TEST_CASE("a single-threaded server serves and cancels without strands", "[http][server]")
{
    auto options = test_options();
    options.single_threaded = true;
    sleeping_handler sleeper{60s};
    test_server server{http::router{}.get("/slow", sleeper.get()).get("/hello", text("hi")),
                       options};
    raw_client leaver{server.port()};
    raw_client client{server.port()};

    leaver.send(request_text("GET", "/slow"));
    REQUIRE(eventually([&] { return *sleeper.started == 1; }));
    client.send(request_text("GET", "/hello"));
    auto res = client.read_response();
    leaver.close();

    REQUIRE(res);
    CHECK(res->body() == "hi");
    CHECK(sleeper.result() == http::cancel_reason::client_gone);
}
