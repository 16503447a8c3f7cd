// Uses the installed tame::http: a server on a free port answers one GET from
// tame's own client, then shuts down.
#include <tame/http.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdio>
#include <string>

namespace asio = boost::asio;
namespace http = tame::http;

int main()
{
    asio::io_context io;
    http::router routes;
    routes.get("/ping", [](http::request_context&) -> asio::awaitable<http::response> {
        co_return http::json_response(boost::json::object{{"pong", true}});
    });
    http::server_options options;
    options.port = 0;
    options.access_log = {};
    http::server server{io, std::move(routes), options};
    server.start();

    unsigned status = 0;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            const auto url =
                "http://127.0.0.1:" + std::to_string(server.local_endpoint().port()) + "/ping";
            auto res = co_await http::async_get(io.get_executor(), url, asio::use_awaitable);
            status = res.result_int();
            co_await server.async_shutdown(std::chrono::seconds{1}, asio::use_awaitable);
        },
        asio::detached);
    io.run();

    std::printf("http consumer: %s\n", status == 200 ? "ok" : "failed");
    return status == 200 ? 0 : 1;
}
