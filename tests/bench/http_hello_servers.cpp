// The two servers of the HTTP benchmark (tests/bench/http_wrk.sh), in one binary
// so that both are built alike:
//
//   beast  a minimal hand-written Beast coroutine server: read, answer, write,
//          no timeouts, no routing, no metrics;
//   beast-strands  the same with each connection on a strand, as tame's are;
//   tame   tame::http::server with its defaults (timeouts, routing, metrics,
//          in-flight cap, disconnect watch, a strand per connection), the access
//          log off unless --access-log is given, and no strands with
//          --single-threaded.
//
// Both answer GET /hello with "hello, world" and run on --threads threads.
#include <tame/http/request_context.hpp>
#include <tame/http/server.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = tame::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

http::response hello_response(unsigned version, bool keep_alive)
{
    http::response res{http::status::ok, version};
    res.set(http::field::content_type, "text/plain");
    res.body() = "hello, world";
    res.keep_alive(keep_alive);
    res.prepare_payload();
    return res;
}

asio::awaitable<void> beast_session(tcp::socket socket)
{
    beast::flat_buffer buffer;
    for (;;) {
        http::request req;
        auto [ec, n] = co_await beast::http::async_read(socket, buffer, req, use_tuple);
        if (ec) {
            break;
        }
        auto res = hello_response(req.version(), req.keep_alive());
        auto [write_ec, written] = co_await beast::http::async_write(socket, res, use_tuple);
        if (write_ec || !res.keep_alive()) {
            break;
        }
    }
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
}

asio::awaitable<void> beast_listener(tcp::acceptor& acceptor, bool strands)
{
    for (;;) {
        auto ex = strands ? asio::any_io_executor{asio::make_strand(acceptor.get_executor())}
                          : acceptor.get_executor();
        auto [ec, socket] = co_await acceptor.async_accept(ex, use_tuple);
        if (ec) {
            break;
        }
        socket.set_option(tcp::no_delay{true});
        asio::co_spawn(ex, beast_session(std::move(socket)), asio::detached);
    }
}

void run(asio::io_context& io, int threads)
{
    std::vector<std::thread> extra;
    for (int i = 1; i < threads; ++i) {
        extra.emplace_back([&io] { io.run(); });
    }
    io.run();
    for (auto& t : extra) {
        t.join();
    }
}

} // namespace

int main(int argc, char** argv)
{
    std::string which;
    unsigned short port = 8081;
    int threads = 1;
    bool access_log = false;
    bool single_threaded = false;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--port") && i + 1 < argc) {
            port = static_cast<unsigned short>(std::atoi(argv[++i]));
        } else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = std::atoi(argv[++i]);
        } else if (!std::strcmp(argv[i], "--access-log")) {
            access_log = true;
        } else if (!std::strcmp(argv[i], "--single-threaded")) {
            single_threaded = true;
        } else {
            which = argv[i];
        }
    }
    if (which != "beast" && which != "beast-strands" && which != "tame") {
        std::fprintf(stderr,
                     "usage: %s beast|beast-strands|tame [--port N] [--threads N] [--access-log] "
                     "[--single-threaded]\n",
                     argv[0]);
        return 2;
    }

    asio::io_context io{threads};
    asio::signal_set signals{io, SIGINT, SIGTERM};
    if (which != "tame") {
        tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), port}};
        asio::co_spawn(io, beast_listener(acceptor, which == "beast-strands"), asio::detached);
        signals.async_wait([&](auto, int) { io.stop(); });
        run(io, threads);
        return 0;
    }

    http::router routes;
    routes.get("/hello", [](http::request_context& ctx) -> asio::awaitable<http::response> {
        co_return hello_response(ctx.request().version(), ctx.request().keep_alive());
    });
    http::server_options options;
    options.port = port;
    options.single_threaded = single_threaded;
    if (!access_log) {
        options.access_log = {};
    }
    http::server server{io, std::move(routes), options};
    server.start();
    signals.async_wait([&](auto, int) {
        server.stop();
        io.stop();
    });
    run(io, threads);
    return 0;
}
