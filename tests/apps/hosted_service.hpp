#pragma once

// Fixtures for the sample services' tests: services hosted by the apps' own
// service_host on 127.0.0.1 with an ephemeral port, and a client that sends one
// request and reads its answer as JSON, every wait bounded.

#include "common/service_host.hpp"

#include <tame_test/eventually.hpp>
#include <tame_test/http_harness.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace apps_test {

namespace asio = boost::asio;
namespace http = tame::http;
using namespace std::chrono_literals;

/// One service on a started server, run by `threads` threads. The destructor
/// shuts it down (no drain) and stops the service, as the apps do.
template <class Service>
class hosted_service {
  public:
    template <class Options>
    explicit hosted_service(Options options, int threads = 2,
                            http::server_options server_options = tame_test::test_options())
        : service_{io_.get_executor(), std::move(options)}, host_{io_,
                                                                  {&service_},
                                                                  std::move(server_options)}
    {
        host_.start();
        for (int i = 0; i < threads; ++i) {
            threads_.emplace_back([this] { io_.run(); });
        }
    }

    ~hosted_service()
    {
        shutdown(0ms);
        for (auto& t : threads_) {
            t.join();
        }
    }

    hosted_service(const hosted_service&) = delete;
    hosted_service& operator=(const hosted_service&) = delete;

    /// The server's graceful shutdown, then the service's async_stop(): the
    /// number of handlers cancelled at the drain's end, once the service's own
    /// work has ended too; nothing if that took over 20 s.
    std::optional<std::size_t> shutdown(std::chrono::steady_clock::duration drain)
    {
        if (stopped_) {
            return std::nullopt;
        }
        stopped_ = true;
        auto future = host_.async_shutdown(drain, asio::use_future);
        if (future.wait_for(20s) != std::future_status::ready) {
            io_.stop();
            return std::nullopt;
        }
        return future.get();
    }

    Service& service() noexcept { return service_; }
    http::server& server() noexcept { return host_.server(); }
    std::uint16_t port() const { return host_.server().local_endpoint().port(); }

  private:
    asio::io_context io_;
    Service service_;
    samples::service_host host_;
    std::vector<std::thread> threads_;
    bool stopped_ = false;
};

/// An answer, its body parsed as JSON when it is JSON.
struct answer {
    http::response response;
    boost::json::value json;

    unsigned status() const { return response.result_int(); }
    const boost::json::object& object() const { return json.as_object(); }
    std::string error() const
    {
        const auto* e = json.is_object() ? json.as_object().if_contains("error") : nullptr;
        return e != nullptr && e->is_string() ? std::string{e->get_string()} : std::string{};
    }
};

/// `res` as an answer; nothing if there was no response.
inline std::optional<answer> answer_of(std::optional<http::response> res)
{
    if (!res) {
        return std::nullopt;
    }
    answer out{std::move(*res), {}};
    boost::system::error_code ec;
    out.json = boost::json::parse(out.response.body(), ec);
    return out;
}

/// Sends one request on a new connection and reads the answer; nothing when
/// no answer came within `limit`.
inline std::optional<answer> call(std::uint16_t port, std::string_view method,
                                  std::string_view target, std::string_view body = {},
                                  std::chrono::seconds limit = 20s)
{
    tame_test::raw_client client{port};
    client.send(tame_test::request_text(
        method, target, body.empty() ? std::string_view{} : "Content-Type: application/json\r\n",
        body));
    return answer_of(client.read_response(false, limit));
}

/// The same request from `clients` threads at once; their answers.
inline std::vector<std::optional<answer>> call_concurrently(std::size_t clients, std::uint16_t port,
                                                            std::string_view method,
                                                            std::string_view target,
                                                            std::string_view body = {})
{
    std::vector<std::optional<answer>> answers(clients);
    std::vector<std::jthread> threads;
    for (auto& a : answers) {
        threads.emplace_back(
            [&a, port, method, target, body] { a = call(port, method, target, body); });
    }
    threads.clear(); // joins
    return answers;
}

/// Whether `done` comes true within `limit`: for an effect of the server's
/// threads (tame_test::eventually), never for time.
inline bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = 5000ms)
{
    return tame_test::eventually(done, limit);
}

/// A JSON number as a double, whichever kind Boost.JSON stored.
inline double number(const boost::json::value& v)
{
    return v.is_double()  ? v.get_double()
           : v.is_int64() ? static_cast<double>(v.get_int64())
                          : static_cast<double>(v.get_uint64());
}

} // namespace apps_test
