// Fuzz target: the input is the raw byte stream of one client connection to a
// tame::http server with all three sample services mounted, as tame-samples
// mounts them. The bytes reach the real parser, router, query and JSON handling
// and every handler's validation, over a loopback socket.
//
// Each input is written whole, the client half-closes, and its answer is read
// until the server closes. Findings are crashes and sanitizer reports, and:
//   - a 500 answer: a handler threw something other than an http_error, so a
//     client's input met a case nobody thought of;
//   - a connection the server does not close within 10 s of the client's
//     half-close (a hang).
// The services run with tiny limits (2 ms tasks, a 50 ms deadline) so that a
// valid request costs milliseconds, not seconds.

#include "common/service_host.hpp"
#include "diagnose/service.hpp"
#include "report_api/service.hpp"
#include "sync_data/service.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;

samples::sync_data_options sync_options()
{
    samples::sync_data_options o;
    o.tasks = 4;
    o.concurrency = 2;
    o.task_time = 1ms;
    o.max_tasks = 50;
    o.max_concurrency = 10;
    o.max_task_time = 2ms;
    o.max_running_tasks = 20;
    o.max_jobs = 8;
    o.job_ttl = 1s;
    return o;
}

samples::report_api_options report_options()
{
    samples::report_api_options o;
    o.pool_capacity = 4;
    o.report_time = 1ms;
    o.max_reports = 50;
    o.failing_ids = {7};
    o.single_threaded = true;
    return o;
}

samples::diagnose_options diagnose_options()
{
    samples::diagnose_options o;
    o.deadline = 50ms;
    o.upstream_delay = 5ms;
    return o;
}

[[noreturn]] void finding(const char* what)
{
    std::fprintf(stderr, "http_request_fuzzer: %s\n", what);
    std::abort();
}

tame::http::server_options server_options()
{
    tame::http::server_options o;
    o.port = 0;
    o.single_threaded = true;
    o.header_timeout = 2s;
    o.body_timeout = 2s;
    o.access_log = [](const tame::http::access_entry& entry) {
        if (entry.status == 500) {
            std::fprintf(stderr, "http_request_fuzzer: 500 for \"%.*s %.*s\"\n",
                         static_cast<int>(entry.method.size()), entry.method.data(),
                         static_cast<int>(entry.target.size()), entry.target.data());
            finding("a request was answered 500 (a handler threw an unexpected exception)");
        }
    };
    return o;
}

/// The server, made once per process and kept (reachable, so LeakSanitizer
/// does not count it): async jobs and kept-alive state carry over between
/// inputs, as they do between a real server's clients.
struct fuzz_server {
    asio::io_context io{1};
    samples::sync_data_service sync{io.get_executor(), sync_options()};
    samples::report_api_service reports{io.get_executor(), report_options()};
    samples::diagnose_service diagnose{io.get_executor(), diagnose_options()};
    samples::service_host host{io, {&sync, &reports, &diagnose}, server_options()};
    asio::ip::tcp::endpoint endpoint;

    fuzz_server()
    {
        host.start();
        endpoint = {asio::ip::make_address("127.0.0.1"), host.server().local_endpoint().port()};
    }
};

fuzz_server& server()
{
    static auto* instance = new fuzz_server;
    return *instance;
}

/// One connection: writes `data`, half-closes, reads until the server closes.
class exchange {
  public:
    exchange(fuzz_server& server, const std::uint8_t* data, std::size_t size) : socket_{server.io}
    {
        // Asynchronous throughout: a blocking connect() fails with EINTR when
        // libFuzzer's timeout alarm goes off during it.
        socket_.async_connect(server.endpoint, [this, data, size](error_code ec) {
            if (ec) {
                std::fprintf(stderr, "http_request_fuzzer: connect: %s\n", ec.message().c_str());
                finding("the server did not take a connection");
            }
            write(data, size);
        });
    }

    bool closed() const noexcept { return closed_; }

  private:
    void write(const std::uint8_t* data, std::size_t size)
    {
        asio::async_write(socket_, asio::buffer(data, size), [this](error_code ec, std::size_t) {
            error_code ignored;
            socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
            if (ec) {
                closed_ = true; // the server closed early, say after a 431
                return;
            }
            read();
        });
    }

    void read()
    {
        socket_.async_read_some(asio::buffer(scratch_), [this](error_code ec, std::size_t) {
            if (ec) {
                closed_ = true;
                return;
            }
            read();
        });
    }

    asio::ip::tcp::socket socket_;
    std::array<char, 16 * 1024> scratch_{};
    bool closed_ = false;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    fuzz_server& s = server();
    exchange client{s, data, size};
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (!client.closed()) {
        s.io.run_one_for(100ms);
        if (std::chrono::steady_clock::now() > give_up) {
            finding("the server kept a half-closed connection open for 10 s");
        }
    }
    // Let the server finish with the connection (its close, the access log)
    // before the next input, so that each input's work stays its own.
    s.io.poll();
    return 0;
}
