// GET /diagnose against upstreams that fail at the TCP and HTTP level: each
// fault gives the documented answer while the service's clock stands still, so
// never from the deadline (or, for a stall, at the deadline and not before),
// the upstream sees its caller close the connection, and the service goes on.
#include "hosted_service.hpp"

#include "diagnose/service.hpp"

#include <tame/http/client.hpp>
#include <tame/manual_time.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>

using namespace apps_test;
using samples::diagnose_options;
using samples::diagnose_service;
using diagnose_host = hosted_service<diagnose_service>;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// A diagnosis service that misbehaves below HTTP: it accepts on 127.0.0.1,
/// reads each request's head, then plays `script` on the socket. Afterwards it
/// reads until the caller closes the connection, and counts that.
class raw_upstream {
  public:
    using script = std::function<asio::awaitable<void>(raw_upstream&, tcp::socket&)>;

    explicit raw_upstream(script s) : script_{std::move(s)}
    {
        acceptor_.open(tcp::v4());
        acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
        acceptor_.listen();
        asio::co_spawn(io_, accept_loop(), asio::detached);
        thread_ = std::jthread{[this] { io_.run(); }};
    }

    ~raw_upstream()
    {
        // Closing every socket ends every script; run() then returns.
        asio::post(io_, [this] {
            boost::system::error_code ignored;
            acceptor_.close(ignored);
            for (auto& s : sockets_) {
                s->close(ignored);
            }
        });
    }

    raw_upstream(const raw_upstream&) = delete;
    raw_upstream& operator=(const raw_upstream&) = delete;

    std::string url() const
    {
        return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/dx";
    }

    /// Writes `bytes` again and again until the caller goes; counts what was sent.
    asio::awaitable<void> stream(tcp::socket& socket, std::string bytes)
    {
        for (;;) {
            auto [ec, n] = co_await asio::async_write(socket, asio::buffer(bytes), use_tuple);
            sent += n;
            if (ec) {
                co_return;
            }
        }
    }

    /// Requests whose head arrived, connections the caller closed, bytes sent.
    std::atomic<int> requests{0};
    std::atomic<int> closed_by_caller{0};
    std::atomic<std::size_t> sent{0};

  private:
    asio::awaitable<void> accept_loop()
    {
        for (;;) {
            auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
            if (ec) {
                co_return;
            }
            sockets_.push_back(std::make_shared<tcp::socket>(std::move(socket)));
            asio::co_spawn(io_, serve(sockets_.back()), asio::detached);
        }
    }

    asio::awaitable<void> serve(std::shared_ptr<tcp::socket> socket)
    {
        std::string head;
        auto [ec, n] = co_await asio::async_read_until(*socket, asio::dynamic_buffer(head),
                                                       "\r\n\r\n", use_tuple);
        if (ec) {
            co_return;
        }
        ++requests;
        co_await script_(*this, *socket);
        if (!socket->is_open()) {
            co_return; // the script closed it
        }
        std::array<char, 4096> scratch;
        for (;;) {
            auto [read_ec, read] =
                co_await socket->async_read_some(asio::buffer(scratch), use_tuple);
            if (read_ec) {
                if (read_ec != asio::error::operation_aborted) {
                    ++closed_by_caller;
                }
                co_return;
            }
        }
    }

    script script_;
    asio::io_context io_;
    tcp::acceptor acceptor_{io_};
    std::list<std::shared_ptr<tcp::socket>> sockets_;
    std::jthread thread_;
};

/// The service's deadline is measured on `time`, a clock that moves only when
/// a test advances it: an answer that comes while it stands still did not come
/// from the deadline.
diagnose_options upstream_at(std::string url, std::shared_ptr<tame::manual_time> time,
                             std::chrono::milliseconds deadline = 2000ms)
{
    diagnose_options options;
    options.upstream = std::move(url);
    options.deadline = deadline;
    options.time = std::move(time);
    return options;
}

/// One GET /diagnose, answered while the clock stands still.
std::optional<answer> diagnose(const diagnose_host& host)
{
    return call(host.port(), "GET", "/diagnose?symptoms=fever");
}

/// One GET /diagnose to an upstream that stalls: nothing comes back 1 ms
/// before the deadline, the answer comes once the clock reaches it.
std::optional<answer> diagnose_until_deadline(const diagnose_host& host, raw_upstream& upstream,
                                              tame::manual_time& time,
                                              std::chrono::milliseconds deadline)
{
    const int requests = upstream.requests + 1;
    tame_test::raw_client client{host.port()};
    client.send(tame_test::request_text("GET", "/diagnose?symptoms=fever"));
    // The call is under way, so its deadline has been counting since now.
    REQUIRE(eventually([&] { return upstream.requests == requests; }));

    time.advance(deadline - 1ms);
    CHECK(client.nothing_arrived());
    time.advance(1ms);
    return answer_of(client.read_response());
}

/// What every fault must leave: no handler running, no deadline waiting, the
/// upstream's connection closed by its caller, and a service that answers the
/// next call the same way (`again`).
void check_nothing_left(diagnose_host& host, raw_upstream& upstream, tame::manual_time& time,
                        unsigned status, const std::function<std::optional<answer>()>& again)
{
    CHECK(eventually([&] { return upstream.closed_by_caller == 1; }, 2000ms));
    CHECK(eventually([&] { return host.server().metrics().in_flight() == 0; }, 2000ms));
    CHECK(eventually([&] { return time.waiting() == 0; }, 2000ms));
    auto next = again();
    REQUIRE(next);
    CHECK(next->status() == status);
    CHECK(eventually([&] { return upstream.closed_by_caller == 2; }, 2000ms));
    CHECK(upstream.requests == 2);
}

/// check_nothing_left() for a fault answered while the clock stands still.
void check_nothing_left(diagnose_host& host, raw_upstream& upstream, tame::manual_time& time,
                        unsigned status)
{
    check_nothing_left(host, upstream, time, status, [&] { return diagnose(host); });
}

std::string failed_calls(diagnose_host& host)
{
    const auto text = host.server().metrics().render();
    const std::string series = "tame_diagnose_upstream_calls_total{outcome=\"failed\"} ";
    const auto at = text.find(series);
    return at == std::string::npos
               ? ""
               : text.substr(at + series.size(), text.find('\n', at) - at - series.size());
}

} // namespace

TEST_CASE("diagnose answers 502 at once when the upstream closes without answering",
          "[apps][diagnose][faults]")
{
    raw_upstream upstream{[](raw_upstream&, tcp::socket& socket) -> asio::awaitable<void> {
        socket.close();
        co_return;
    }};
    auto time = std::make_shared<tame::manual_time>();
    diagnose_host host{upstream_at(upstream.url(), time)};

    auto a = diagnose(host);

    REQUIRE(a);
    CHECK(a->status() == 502);
    CHECK(a->error().find("could not be reached") != std::string::npos);
    CHECK(failed_calls(host) == "1");
    // Its deadline, never reached, is not left waiting.
    CHECK(eventually([&] { return time->waiting() == 0; }, 2000ms));
}

TEST_CASE("diagnose answers 502 at once when the upstream resets the connection mid-response",
          "[apps][diagnose][faults]")
{
    raw_upstream upstream{[](raw_upstream&, tcp::socket& socket) -> asio::awaitable<void> {
        const std::string part =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            "{\"diagnoses\":[{\"cond";
        co_await asio::async_write(socket, asio::buffer(part), asio::use_awaitable);
        // Give the caller time to read the part, then reset (SO_LINGER 0: RST, not FIN).
        asio::steady_timer pause{co_await asio::this_coro::executor, 50ms};
        co_await pause.async_wait(asio::use_awaitable);
        socket.set_option(asio::socket_base::linger{true, 0});
        socket.close();
    }};
    auto time = std::make_shared<tame::manual_time>();
    diagnose_host host{upstream_at(upstream.url(), time)};

    auto a = diagnose(host);

    REQUIRE(a);
    CHECK(a->status() == 502);
    CHECK(a->error().find("could not be reached") != std::string::npos);
    CHECK(eventually([&] { return host.server().metrics().in_flight() == 0; }, 2000ms));
    CHECK(eventually([&] { return time->waiting() == 0; }, 2000ms));
    auto again = call(host.port(), "GET", "/diagnose?symptoms=cough");
    REQUIRE(again);
    CHECK(again->status() == 502);
    CHECK(upstream.requests == 2);
}

TEST_CASE("diagnose answers 408 at the deadline, not before, when the upstream stalls, and "
          "closes its connection",
          "[apps][diagnose][faults]")
{
    raw_upstream upstream{[](raw_upstream&, tcp::socket&) -> asio::awaitable<void> { co_return; }};
    auto time = std::make_shared<tame::manual_time>();
    diagnose_host host{upstream_at(upstream.url(), time, 300ms)};

    auto a = diagnose_until_deadline(host, upstream, *time, 300ms);

    REQUIRE(a);
    CHECK(a->status() == 408);
    CHECK(a->error().find("did not answer within 300 ms") != std::string::npos);
    check_nothing_left(host, upstream, *time, 408,
                       [&] { return diagnose_until_deadline(host, upstream, *time, 300ms); });
}

TEST_CASE("diagnose answers 502 at once when the upstream answers something other than HTTP",
          "[apps][diagnose][faults]")
{
    raw_upstream upstream{[](raw_upstream&, tcp::socket& socket) -> asio::awaitable<void> {
        // Then stays silent: the answer must come from the parser, not a timeout.
        const std::string garbage =
            "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\x01\x02\x03 not http at all\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(garbage), asio::use_awaitable);
    }};
    auto time = std::make_shared<tame::manual_time>();
    diagnose_host host{upstream_at(upstream.url(), time)};

    auto a = diagnose(host);

    REQUIRE(a);
    CHECK(a->status() == 502);
    check_nothing_left(host, upstream, *time, 502);
}

TEST_CASE("diagnose answers 502 at once to an endless body and stops reading it at the body limit",
          "[apps][diagnose][faults]")
{
    std::string head;
    std::string chunk;
    SECTION("chunked")
    {
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: "
               "chunked\r\n\r\n";
        chunk = "10000\r\n" + std::string(0x10000, ' ') + "\r\n";
    }
    SECTION("with a huge Content-Length")
    {
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
               "1000000000000\r\n\r\n";
        chunk = std::string(0x10000, ' ');
    }
    raw_upstream upstream{[&](raw_upstream& self, tcp::socket& socket) -> asio::awaitable<void> {
        co_await asio::async_write(socket, asio::buffer(head), asio::use_awaitable);
        co_await self.stream(socket, chunk);
    }};
    auto time = std::make_shared<tame::manual_time>();
    diagnose_host host{upstream_at(upstream.url(), time)};

    auto a = diagnose(host);

    REQUIRE(a);
    CHECK(a->status() == 502);
    CHECK(a->error().find("body limit") != std::string::npos);
    // The caller read at most its 8 MiB body limit: what the upstream got out
    // beyond that sits in the two sockets' kernel buffers.
    CHECK(eventually([&] { return upstream.closed_by_caller == 1; }, 2000ms));
    CHECK(upstream.sent < http::client_options{}.body_limit + 16 * 1024 * 1024);
    check_nothing_left(host, upstream, *time, 502);
}

TEST_CASE("diagnose answers 502 at once to a header block over the client's limit",
          "[apps][diagnose][faults]")
{
    raw_upstream upstream{[](raw_upstream& self, tcp::socket& socket) -> asio::awaitable<void> {
        const std::string status_line = "HTTP/1.1 200 OK\r\n";
        co_await asio::async_write(socket, asio::buffer(status_line), asio::use_awaitable);
        co_await self.stream(socket, "X-Filler: " + std::string(1000, 'a') + "\r\n");
    }};
    auto time = std::make_shared<tame::manual_time>();
    diagnose_host host{upstream_at(upstream.url(), time)};

    auto a = diagnose(host);

    REQUIRE(a);
    CHECK(a->status() == 502);
    CHECK(a->error().find("header limit") != std::string::npos);
    check_nothing_left(host, upstream, *time, 502);
}

namespace {

/// An upstream that answers 500, or 200 with a JSON body once `healthy`;
/// while `stalled`, it holds its answer back.
raw_upstream::script sick_then_well(const std::atomic<bool>& healthy,
                                    const std::atomic<bool>* stalled = nullptr)
{
    return [&healthy, stalled](raw_upstream&, tcp::socket& socket) -> asio::awaitable<void> {
        while (stalled != nullptr && *stalled) {
            asio::steady_timer pause{socket.get_executor(), 5ms};
            co_await pause.async_wait(use_tuple);
        }
        const std::string bytes =
            healthy ? "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                      "2\r\nConnection: close\r\n\r\n{}"
                    : "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: "
                      "close\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(bytes), use_tuple);
        socket.close();
    };
}

/// The diagnose breaker's gauge: 0 closed, 1 open, 2 half-open.
std::string breaker_state(diagnose_host& host)
{
    const auto text = host.server().metrics().render();
    const std::string series = "tame_breaker_state{name=\"diagnose_upstream\"} ";
    const auto at = text.find(series);
    return at == std::string::npos
               ? ""
               : text.substr(at + series.size(), text.find('\n', at) - at - series.size());
}

} // namespace

TEST_CASE("diagnose spares a failing upstream with an immediate 503, probes it half-open, and "
          "closes once it answers",
          "[apps][diagnose][faults][breaker]")
{
    std::atomic<bool> healthy{false};
    std::atomic<bool> stalled{false};
    raw_upstream upstream{sick_then_well(healthy, &stalled)};
    auto time = std::make_shared<tame::manual_time>(); // stands still unless advanced
    diagnose_host host{upstream_at(upstream.url(), time)};

    // Failing: 502s, until the breaker starts answering for the upstream.
    int bad_gateways = 0;
    std::optional<answer> refused;
    for (int i = 0; i < 50 && !refused; ++i) {
        auto a = diagnose(host);
        REQUIRE(a);
        if (a->status() == 503) {
            refused = std::move(a);
        } else {
            CHECK(a->status() == 502);
            ++bad_gateways;
        }
    }
    REQUIRE(refused);
    CHECK(bad_gateways >= 6); // the protection count: five failures drop nothing
    CHECK(refused->response[http::field::retry_after] == "1");
    CHECK(breaker_state(host) == "1");
    // While it stays open, a refused call never reaches the upstream: only the
    // 502s went there.
    const int reached_before = upstream.requests;
    int spared = 0;
    int reached = 0;
    for (int i = 0; i < 20; ++i) {
        auto a = diagnose(host);
        REQUIRE(a);
        CHECK((a->status() == 503 || a->status() == 502));
        (a->status() == 503 ? spared : reached) += 1;
    }
    CHECK(spared > 0);
    CHECK(upstream.requests - reached_before == reached);

    // Well again: after a quiet second, a probe goes through, and the breaker
    // reads half-open while it is on its way.
    healthy = true;
    stalled = true;
    time->advance(1001ms);
    const int before_probe = upstream.requests;
    tame_test::raw_client prober{host.port()};
    prober.send(tame_test::request_text("GET", "/diagnose?symptoms=fever"));
    REQUIRE(eventually([&] { return upstream.requests == before_probe + 1; }));
    CHECK(breaker_state(host) == "2");
    stalled = false;
    auto probe = answer_of(prober.read_response());
    REQUIRE(probe);
    CHECK(probe->status() == 200);
    CHECK(upstream.requests == before_probe + 1);

    // Steady traffic while the window turns over: the breaker closes.
    for (int step = 0; step < 160 && breaker_state(host) != "0"; ++step) {
        time->advance(250ms);
        for (int i = 0; i < 4; ++i) {
            auto a = diagnose(host);
            REQUIRE(a);
            CHECK((a->status() == 200 || a->status() == 503));
        }
    }
    CHECK(breaker_state(host) == "0");
    auto after = diagnose(host);
    REQUIRE(after);
    CHECK(after->status() == 200);
}

TEST_CASE("diagnose with the breaker off keeps calling a failing upstream",
          "[apps][diagnose][faults][breaker]")
{
    std::atomic<bool> healthy{false};
    raw_upstream upstream{sick_then_well(healthy)};
    auto time = std::make_shared<tame::manual_time>();
    auto options = upstream_at(upstream.url(), time);
    options.breaker = false;
    diagnose_host host{options};

    for (int i = 0; i < 30; ++i) {
        auto a = diagnose(host);
        REQUIRE(a);
        CHECK(a->status() == 502);
    }

    CHECK(upstream.requests == 30);
    CHECK(breaker_state(host).empty());
}
