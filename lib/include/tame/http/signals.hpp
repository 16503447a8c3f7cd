#pragma once

#include <tame/detail/config.hpp>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>

namespace tame::http {

class server;

/// Shuts a server down on SIGINT or SIGTERM, as a service's main wants: the first
/// signal starts `server.async_shutdown(drain_timeout)`, a second one stops at
/// once (server.stop() and io.stop()).
///
/// When the shutdown has finished, `on_stopped(cancelled)` runs (if given; say,
/// to close the app's pools) and the signal wait ends, so that `io.run()` returns
/// once nothing else is left.
///
/// Both the server and `io` must outlive this object; destroying it stops
/// listening for signals.
class shutdown_on_signals {
  public:
    /// Starts listening for SIGINT and SIGTERM on `io`.
    shutdown_on_signals(asio::io_context& io, server& srv,
                        std::chrono::steady_clock::duration drain_timeout,
                        std::function<void(std::size_t)> on_stopped = {});
    ~shutdown_on_signals();

    shutdown_on_signals(const shutdown_on_signals&) = delete;
    shutdown_on_signals& operator=(const shutdown_on_signals&) = delete;

  private:
    struct state;
    std::shared_ptr<state> state_;
};

} // namespace tame::http
