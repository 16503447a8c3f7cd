// A hello service on tame::http: two routes, JSON in and out, a deadline on
// every request, /healthz and /metrics built in, and a graceful shutdown on
// SIGINT or SIGTERM. To end on its own, it calls itself once with tame's client
// and then sends itself SIGTERM.
#include <tame/deadline.hpp>
#include <tame/http.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <csignal>
#include <cstdio>
#include <string>

namespace asio = boost::asio;
namespace http = tame::http;
using namespace std::chrono_literals;

int main()
{
    asio::io_context io;

    http::router routes;
    routes.get("/hello/{name}", [](http::request_context& ctx) -> asio::awaitable<http::response> {
        co_return http::json_response(
            boost::json::object{{"message", "hello, " + ctx.path_param("name")}});
    });
    routes.post("/echo", [](http::request_context& ctx) -> asio::awaitable<http::response> {
        auto body = http::parse_json_object(ctx.request()); // 400 with the reason if it is not
        co_return http::json_response(http::status::created, body);
    });

    http::server_options options;
    options.port = 0;             // a free port; the default is 8080
    options.request_timeout = 2s; // a handler still running then is cancelled: 503
    http::server server{io, std::move(routes), options};
    server.start();
    http::shutdown_on_signals on_signals{
        io, server, 10s,
        [](std::size_t cancelled) { std::printf("stopped; %zu requests cancelled\n", cancelled); }};

    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            const auto url = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port()) +
                             "/hello/tame";
            auto res = co_await http::async_get(io.get_executor(), url,
                                                tame::cancel_after(1s, asio::use_awaitable));
            std::printf("%u %s\n", res.result_int(), res.body().c_str());
            std::raise(SIGTERM);
        },
        asio::detached);

    io.run(); // returns once the shutdown has finished
}
