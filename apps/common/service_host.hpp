#pragma once

#include "common/app_options.hpp"
#include "common/sample_service.hpp"

#include <tame/http/server.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <vector>

namespace samples {

/// The routes of `services`, one router.
http::router routes_of(std::initializer_list<sample_service*> services);

/// Puts `services` on one tame::http server: their routes, their metrics, and
/// their async_stop() once the server has stopped. The tests host services with it
/// too, so what they test is what the apps run. The host must outlive its
/// operations, and the services the host.
class service_host {
  public:
    using executor_type = asio::any_io_executor;

    service_host(asio::io_context& io, std::initializer_list<sample_service*> services,
                 http::server_options options);

    /// The io_context's executor: where handlers that name no executor run.
    executor_type get_executor() const noexcept { return executor_; }

    /// Starts listening (throws std::system_error, as server::start()) and
    /// tells each service where.
    void start();

    /// Shuts down in order: the server's graceful shutdown
    /// (server::async_shutdown with `drain`), then every service's async_stop(),
    /// so that requests in flight may use the services until the drain ends.
    ///
    /// Completion signature: `void(std::size_t cancelled)`, the number of
    /// requests whose handlers the drain's end cancelled, once the services'
    /// work has ended too.
    ///
    /// Cancellation: none; the handler's slot is not used. To cut the drain
    /// short, call server().stop(): it cancels the handlers still running, and
    /// the shutdown goes on to stop the services.
    ///
    /// The handler runs on its associated executor (by default the host's),
    /// never inside this call, and counts as outstanding work there until then.
    template <class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, void(std::size_t)>
    auto async_shutdown(std::chrono::steady_clock::duration drain,
                        Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return asio::async_initiate<Token, void(std::size_t)>(
            [this](auto handler, std::chrono::steady_clock::duration d) {
                start_shutdown(d,
                               asio::any_completion_handler<void(std::size_t)>{std::move(handler)});
            },
            token, drain);
    }

    /// Stops every service at once (call it once the server has stopped).
    ///
    /// Completion signature: `void(error_code)`, once every service's
    /// async_stop() has completed: the first error among them, if any.
    ///
    /// Cancellation: none, as async_stop().
    ///
    /// The handler runs on its associated executor (by default the host's),
    /// never inside this call, and counts as outstanding work there until then.
    template <class Token = asio::default_completion_token_t<executor_type>>
    requires asio::completion_token_for<Token, void(error_code)>
    auto async_stop_services(Token&& token = asio::default_completion_token_t<executor_type>())
    {
        return asio::async_initiate<Token, void(error_code)>(
            [this](auto handler) {
                start_stop_services(
                    asio::any_completion_handler<void(error_code)>{std::move(handler)});
            },
            token);
    }

    http::server& server() noexcept { return server_; }
    const http::server& server() const noexcept { return server_; }

  private:
    void start_shutdown(std::chrono::steady_clock::duration drain,
                        asio::any_completion_handler<void(std::size_t)> handler);
    void start_stop_services(asio::any_completion_handler<void(error_code)> handler);

    executor_type executor_;
    std::vector<sample_service*> services_;
    http::server server_;
};

/// What a sample app's main does once its services exist: start them on
/// `app`'s address, log where, run the io_context on `app`'s threads and shut
/// down gracefully on SIGINT/SIGTERM. Returns the process's exit code: 0 after a
/// shutdown, 1 when the server cannot listen.
int run_services(asio::io_context& io, const app_options& app,
                 std::initializer_list<sample_service*> services, const char* name);

} // namespace samples
