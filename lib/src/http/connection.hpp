#pragma once

// One accepted connection of a tame::http::server: a coroutine on a strand of its
// own that reads requests, runs their handlers and writes their responses in
// order. Private to lib/src/http.

#include "server_state.hpp"

#include <tame/detail/task_lane.hpp>
#include <tame/http/message.hpp>
#include <tame/http/request_context.hpp>
#include <tame/permit.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>

#include <atomic>
#include <cstdint>
#include <exception>
#include <list>
#include <memory>
#include <optional>

namespace tame::http::detail {

class connection : public std::enable_shared_from_this<connection> {
  public:
    connection(std::shared_ptr<server_state> server, asio::ip::tcp::socket socket,
               asio::any_io_executor executor, permit slot);
    ~connection();

    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    /// Makes the connection visible to the sweeper and to shutdowns; once, right
    /// after make_shared.
    void register_with_server();

    /// Serves requests until the client leaves, an error or a timeout closes the
    /// connection, or a shutdown ends it. Runs on the strand.
    asio::awaitable<void> run();

    /// The current phase's deadline, in ticks(); read by the sweeper (any thread).
    std::int64_t deadline() const noexcept { return deadline_.load(std::memory_order_relaxed); }

    /// Claims the right to post on_deadline(); false if one is already posted.
    bool claim_deadline_post() noexcept
    {
        return !deadline_posted_.exchange(true, std::memory_order_acq_rel);
    }

    /// The number of the request whose handler runs now, or 0 (any thread).
    std::uint64_t running_request() const noexcept
    {
        return running_request_.load(std::memory_order_relaxed);
    }

    /// Claims the right to post start_watch() for `request`; once per request.
    bool claim_watch(std::uint64_t request) noexcept
    {
        return watch_claimed_.exchange(request, std::memory_order_relaxed) != request;
    }

    /// The connection's strand (or, single-threaded, the io_context's executor).
    const asio::any_io_executor& executor() const noexcept { return executor_; }

    /// Runs run() as the one task of the connection's own lane (cancellable on
    /// its strand, see cancel_handler()); `end(std::exception_ptr)` runs on the
    /// strand once it has ended. Once, right after register_with_server().
    template <class End>
    void start(End end)
    {
        auto self = shared_from_this();
        task_ = &tame::detail::spawn_on_lane<tame::detail::early_cancel::at_first_await>(
            lane_, 0, [self] { return self->run(); }, std::move(end),
            [](tame::detail::task_lane& lane, tame::detail::lane_task& task) { lane.link(task); },
            self);
    }

    // Called on the strand:
    /// The deadline may have passed: close the connection, or cancel the handler.
    void on_deadline();
    /// The sweeper found `request`'s handler running: watch for the client leaving.
    void start_watch(std::uint64_t request);
    /// A shutdown began: close if idle, else close after the current response.
    void on_drain();
    /// The drain period ended: cancel the handler if one runs, else close.
    void on_drain_timeout();
    /// An immediate stop: cancel the handler and close.
    void on_stop();

  private:
    enum class phase : std::uint8_t { waiting, reading, handling, writing, lingering, closed };

    struct answer;

    /// Why a request's framing must be refused although Beast accepted it, or
    /// nullptr.
    static const char* unsafe_framing(
        const boost::beast::http::request_parser<boost::beast::http::string_body>& parser);
    asio::awaitable<bool> serve(http::request req);
    asio::awaitable<void> write_error(status code, std::string_view message);
    asio::awaitable<void> linger();
    asio::awaitable<std::tuple<std::exception_ptr, response>> run_handler(std::size_t route,
                                                                          request_context& ctx);
    response answer_exception(std::exception_ptr ep, request_context& ctx, std::size_t route);
    // Answers a request that could not be read (413, 431, 400), or stays silent
    // when the client is gone.
    asio::awaitable<void> fail_request(const boost::system::error_code& ec);
    void finish(response& res, unsigned version, bool keep_alive);
    void log(const access_entry& entry);

    void arm(std::chrono::milliseconds timeout, clock::time_point now) noexcept;
    void disarm() noexcept;
    void watch_for_disconnect();
    void on_readable();
    void stop_watching();
    bool cancel_handler(cancel_reason why);
    void close_socket();

    std::shared_ptr<server_state> server_;
    asio::ip::tcp::socket socket_;
    asio::any_io_executor executor_;
    permit slot_;
    asio::ip::tcp::endpoint peer_;
    std::list<connection*>::iterator registration_;
    bool registered_ = false;
    boost::beast::flat_buffer buffer_;
    std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;

    std::atomic<std::int64_t> deadline_;
    std::atomic<bool> deadline_posted_{false};
    std::atomic<std::uint64_t> running_request_{0};
    std::atomic<std::uint64_t> watch_claimed_{0};

    // Strand-only state.
    phase phase_ = phase::waiting;
    clock::time_point started_;
    bool draining_ = false;
    bool client_gone_ = false;
    // The running handler: its context, and whether it has returned. It runs in
    // run()'s coroutine, the task of lane_ whose record task_ is (valid while
    // run() runs): cancelling the handler is cancelling that task, which
    // cancel_handler() does only while handler_done_ is false.
    request_context* context_ = nullptr;
    bool handler_done_ = true;
    bool watching_ = false;
    std::uint64_t request_count_ = 0;
    tame::detail::task_lane lane_;
    tame::detail::lane_task* task_ = nullptr;
};

} // namespace tame::http::detail
