#pragma once

#include <tame/http/metrics.hpp>
#include <tame/http/router.hpp>

#include <boost/asio/ip/tcp.hpp>

#include <functional>

namespace samples {

namespace http = tame::http;

/// One sample service as a server hosts it: its routes, its metrics and the
/// background work it must stop when the server has stopped. The hosts (the
/// mains, and the tests) put one or several on a server.
class sample_service {
  public:
    virtual ~sample_service() = default;

    /// Adds the service's endpoints.
    virtual void add_routes(http::router& routes) = 0;

    /// Adds the service's gauges and counters to /metrics.
    virtual void add_metrics(http::metrics_registry& metrics) = 0;

    /// Called once the server listens on `endpoint` (the diagnosis service
    /// calls its embedded upstream there).
    virtual void on_started(const boost::asio::ip::tcp::endpoint& endpoint) { (void)endpoint; }

    /// Called once the server has stopped taking and answering requests: asks
    /// the work the service runs on its own (jobs, pool tasks) to end, and calls
    /// `done` once it has, on whichever thread ended it (perhaps inside this
    /// call). The service may be destroyed after that. Thread-safe.
    virtual void async_stop(std::function<void()> done) = 0;
};

} // namespace samples
