#include "common/service_host.hpp"

#include <tame/http/signals.hpp>

#include <atomic>
#include <iostream>
#include <memory>
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

service_host::service_host(boost::asio::io_context& io,
                           std::initializer_list<sample_service*> services,
                           http::server_options options)
    : services_{services}, server_{io, routes_of(services), std::move(options)}
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

void service_host::async_shutdown(std::chrono::steady_clock::duration drain,
                                  std::function<void(std::size_t)> done)
{
    server_.async_shutdown(drain, [this, done = std::move(done)](std::size_t cancelled) {
        async_stop_services([done, cancelled] {
            if (done) {
                done(cancelled);
            }
        });
    });
}

void service_host::async_stop_services(std::function<void()> done)
{
    if (services_.empty()) {
        done();
        return;
    }
    auto left = std::make_shared<std::atomic<std::size_t>>(services_.size());
    for (auto* service : services_) {
        service->async_stop([left, done] {
            if (left->fetch_sub(1) == 1) {
                done();
            }
        });
    }
}

int run_services(boost::asio::io_context& io, const app_options& app,
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
            host.async_stop_services([name, cancelled] {
                std::cerr << name << ": stopped (" << cancelled
                          << " request(s) cancelled at the end of the drain)" << std::endl;
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
