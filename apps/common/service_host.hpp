#pragma once

#include "common/app_options.hpp"
#include "common/sample_service.hpp"

#include <tame/http/server.hpp>

#include <boost/asio/io_context.hpp>

#include <initializer_list>
#include <vector>

namespace samples {

/// The routes of `services`, one router.
http::router routes_of(std::initializer_list<sample_service*> services);

/// Puts `services` on one tame::http server: their routes, their metrics, and
/// their async_stop() once the server has stopped. The tests host services with it
/// too, so what they test is what the apps run.
class service_host {
  public:
    service_host(boost::asio::io_context& io, std::initializer_list<sample_service*> services,
                 http::server_options options);

    /// Starts listening (throws std::system_error, as server::start()) and
    /// tells each service where.
    void start();

    /// The server's shutdown, then each service's async_stop(); `done` gets the
    /// number of handlers the drain's end cancelled, once everything has ended.
    void async_shutdown(std::chrono::steady_clock::duration drain,
                        std::function<void(std::size_t)> done);

    /// Stops every service (once the server has stopped) and calls `done` when
    /// all of them have.
    void async_stop_services(std::function<void()> done);

    http::server& server() noexcept { return server_; }
    const http::server& server() const noexcept { return server_; }

  private:
    std::vector<sample_service*> services_;
    http::server server_;
};

/// What a sample app's main does once its services exist: start them on
/// `app`'s address, log where, run the io_context on `app`'s threads and shut
/// down gracefully on SIGINT/SIGTERM. Returns the process's exit code: 0 after a
/// shutdown, 1 when the server cannot listen.
int run_services(boost::asio::io_context& io, const app_options& app,
                 std::initializer_list<sample_service*> services, const char* name);

} // namespace samples
