#include "common/service_host.hpp"

#include <tame/http/signals.hpp>
#include <tame/wait_group.hpp>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/prefer.hpp>

#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

namespace samples {

http::router routes_of(std::initializer_list<sample_service*> services)
{
    http::router routes;
    for (auto* service : services) {
        service->add_routes(routes);
    }
    return routes;
}

service_host::service_host(asio::io_context& io, std::initializer_list<sample_service*> services,
                           http::server_options options)
    : executor_{io.get_executor()}, services_{services}, server_{io, routes_of(services),
                                                                 std::move(options)}
{
    for (auto* service : services_) {
        service->add_metrics(server_.metrics());
    }
}

void service_host::start()
{
    server_.start();
    for (auto* service : services_) {
        service->on_started(server_.local_endpoint());
    }
}

void service_host::start_shutdown(std::chrono::steady_clock::duration drain,
                                  asio::any_completion_handler<void(std::size_t)> handler)
{
    // The server keeps work only on the io_context; the caller's executor may be
    // another one, so the handler keeps its own until it runs.
    auto work = asio::prefer(asio::get_associated_executor(handler, executor_),
                             asio::execution::outstanding_work.tracked);
    server_.async_shutdown(drain, [this, handler = std::move(handler),
                                   work = std::move(work)](std::size_t cancelled) mutable {
        // The services stop after the server: requests still in flight may use
        // them until the drain ends.
        async_stop_services(
            [handler = std::move(handler), work = std::move(work), cancelled](error_code) mutable {
                // Not inside the initiating call: a completion may run here at once
                // if this thread already runs the handler's executor.
                asio::dispatch(work, [handler = std::move(handler), cancelled]() mutable {
                    std::move(handler)(cancelled);
                });
            });
    });
}

namespace {

/// The services' stops under way, as Go would join them: a wait_group counts
/// the stops not yet ended, and the first error among them is kept.
struct stop_join {
    explicit stop_join(const asio::any_io_executor& ex) : pending{ex} {}

    void record(error_code ec)
    {
        const std::lock_guard lock{mutex};
        if (ec && !first_error) {
            first_error = ec;
        }
    }

    error_code error()
    {
        const std::lock_guard lock{mutex};
        return first_error;
    }

    tame::wait_group pending;
    std::mutex mutex;
    error_code first_error;
};

} // namespace

void service_host::start_stop_services(asio::any_completion_handler<void(error_code)> handler)
{
    auto work = asio::prefer(asio::get_associated_executor(handler, executor_),
                             asio::execution::outstanding_work.tracked);
    auto join = std::make_shared<stop_join>(executor_);
    join->pending.add(services_.size());
    for (auto* service : services_) {
        service->async_stop([join](error_code ec) {
            join->record(ec);
            join->pending.done();
        });
    }
    // The wait completes on the host's executor, never inside this call (with no
    // services too); nothing cancels it or destroys the group meanwhile.
    join->pending.async_wait(
        [join, handler = std::move(handler), work = std::move(work)](error_code) mutable {
            asio::dispatch(work, [handler = std::move(handler), ec = join->error()]() mutable {
                std::move(handler)(ec);
            });
        });
}

int run_services(asio::io_context& io, const app_options& app,
                 std::initializer_list<sample_service*> services, const char* name)
{
    service_host host{io, services, app.server_options()};
    try {
        host.start();
    } catch (const std::exception& e) {
        std::cerr << name << ": " << e.what() << '\n';
        return 1;
    }
    const auto at = host.server().local_endpoint();
    std::cerr << name << ": listening on http://" << at.address().to_string() << ':' << at.port()
              << " with " << app.thread_count() << " thread(s); SIGINT or SIGTERM stops it"
              << std::endl;

    // The services stop after the server: requests still in flight may use them
    // until the drain ends.
    http::shutdown_on_signals signals{
        io, host.server(), app.drain, [&host, name](std::size_t cancelled) {
            host.async_stop_services([name, cancelled](error_code ec) {
                std::cerr << name << ": stopped (" << cancelled
                          << " request(s) cancelled at the end of the drain)";
                if (ec) {
                    std::cerr << "; a service did not stop cleanly: " << ec.message();
                }
                std::cerr << std::endl;
            });
        }};
    std::vector<std::thread> threads;
    int exit_code = 0;
    try {
        for (unsigned i = 1; i < app.thread_count(); ++i) {
            threads.emplace_back([&io] { io.run(); });
        }
    } catch (const std::system_error& e) {
        std::cerr << name << ": cannot start " << app.thread_count() << " threads: " << e.what()
                  << std::endl;
        io.stop();
        exit_code = 1;
    }
    io.run();
    for (auto& t : threads) {
        t.join();
    }
    return exit_code;
}

} // namespace samples
