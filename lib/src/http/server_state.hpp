#pragma once

// The shared state of a tame::http::server: what its accept loop, its sweeper,
// its connections and its shutdown have in common. Private to lib/src/http.

#include <tame/adaptive_shedder.hpp>
#include <tame/detail/graceful_shutdown.hpp>
#include <tame/http/metrics.hpp>
#include <tame/http/router.hpp>
#include <tame/http/server_options.hpp>
#include <tame/semaphore.hpp>
#include <tame/time_source.hpp>
#include <tame/wait_group.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <vector>

namespace tame::http::detail {

namespace asio = boost::asio;

using strand_type = asio::strand<asio::io_context::executor_type>;
using clock = time_source::clock; // the steady clock's types; the time comes from a time_source

class connection;

/// Where the server is in its life.
enum class server_stage { created, running, draining, stopped };

/// Nanoseconds on the server's time_source: the form connections keep their
/// deadlines in, so that the sweeper can read them without locks.
inline std::int64_t ticks(clock::time_point t) noexcept
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

class server_state : public std::enable_shared_from_this<server_state>,
                     public tame::detail::shutdown_target {
  public:
    server_state(asio::io_context& io, router routes, server_options options);

    asio::io_context& io;
    /// Routes from here on are the built-in ones (/healthz, /metrics).
    const std::size_t first_builtin_route;
    const router routes;
    const server_options options;
    /// Where every timeout is measured and waited for (options.time).
    const std::shared_ptr<time_source> time;
    metrics_registry metrics;
    /// Null unless options.shedding is set.
    const std::unique_ptr<adaptive_shedder> shedder;

    /// Runs the accept loop, the sweeper and the shutdown steps.
    strand_type control;
    asio::ip::tcp::acceptor acceptor;
    /// One permit per open connection: accept waits for one.
    async_semaphore connection_slots;
    /// Counts the accept loop and every connection while their coroutines
    /// exist (see active_scope in server.cpp), for shutdown to wait on.
    wait_group active;
    const clock::duration sweep_interval;

    server_stage stage() const noexcept { return stage_.load(std::memory_order_acquire); }

    /// The time now, on the server's time_source.
    clock::time_point now() const noexcept { return time->now(); }

    /// Binds, listens, and starts the accept loop and the sweeper.
    void start();

    /// Where start() listens (set once, before anything else runs).
    asio::ip::tcp::endpoint local_endpoint() const { return local_endpoint_; }

    /// Takes a slot for a request's handler, or refuses when max_in_flight run.
    bool try_enter_handler() noexcept;
    void leave_handler() noexcept;

    /// Connection bookkeeping (any thread).
    std::list<connection*>::iterator add(connection* c);
    void remove(std::list<connection*>::iterator it);
    std::vector<std::shared_ptr<connection>> connections();

    /// Graceful and immediate stops (any thread).
    void shutdown(clock::duration drain, asio::any_completion_handler<void(std::size_t)> handler);
    void stop();

    // The steps of a shutdown (graceful_shutdown), on the control strand.
    void stop_intake() override;
    wait_group& work() noexcept override { return active; }
    void cancel_work() override;
    std::size_t cancelled_work() const noexcept override
    {
        return cancelled_.load(std::memory_order_relaxed);
    }
    void shutdown_finished() override;

    /// A handler cancelled because a drain period ended.
    void count_cancelled() noexcept { cancelled_.fetch_add(1, std::memory_order_relaxed); }

  private:
    asio::awaitable<void> accept_loop();
    asio::awaitable<void> sweep();
    void stop_accepting();

    std::atomic<server_stage> stage_{server_stage::created};
    asio::ip::tcp::endpoint local_endpoint_;
    std::atomic<std::size_t> cancelled_{0};

    std::mutex mutex_;
    std::list<connection*> connections_;

    /// Stops the sweeper, on the control strand.
    asio::cancellation_signal sweep_stop_;
    tame::detail::graceful_shutdown shutdown_;
};

} // namespace tame::http::detail
