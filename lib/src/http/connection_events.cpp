// The events that reach a connection from elsewhere, each posted to its strand:
// the sweeper's (a deadline passed; a handler runs, so watch for the client
// leaving) and the server's shutdown and stop. Each may cancel the running
// handler, the one task of the connection's lane.
#include "connection.hpp"

#include <boost/asio/bind_executor.hpp>

#include <cerrno>

#include <sys/socket.h>

namespace tame::http::detail {
namespace {

using error_code = boost::system::error_code;

} // namespace

void connection::watch_for_disconnect()
{
    watching_ = true;
    socket_.async_wait(
        asio::ip::tcp::socket::wait_read,
        asio::bind_executor(
            executor_, [self = shared_from_this(), request = request_count_](const error_code& ec) {
                if (ec || request != self->request_count_ || self->handler_done_) {
                    return;
                }
                self->on_readable();
            }));
}

void connection::on_readable()
{
    // A peek tells end of stream (0) and errors (a reset) from bytes (a
    // pipelined request, which the next loop reads) and from a stale readiness
    // event left by bytes already read (EAGAIN), after which the watch goes on.
    char byte = 0;
    const auto n = ::recv(socket_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        watch_for_disconnect();
        return;
    }
    watching_ = false;
    if (n <= 0) {
        client_gone_ = true;
        cancel_handler(cancel_reason::client_gone);
    }
}

void connection::start_watch(std::uint64_t request)
{
    if (request == request_count_ && !handler_done_ && !watching_) {
        watch_for_disconnect();
    }
}

void connection::stop_watching()
{
    if (watching_) {
        watching_ = false;
        error_code ignored;
        socket_.cancel(ignored);
    }
}

bool connection::cancel_handler(cancel_reason why)
{
    if (handler_done_ || context_ == nullptr || task_ == nullptr || context_->is_cancelled()) {
        return false;
    }
    context_->mark_cancelled(why);
    tame::detail::task_lane::cancel(*task_, asio::cancellation_type::terminal);
    return true;
}

void connection::on_deadline()
{
    deadline_posted_.store(false, std::memory_order_release);
    if (deadline() > ticks(server_->now()) || phase_ == phase::closed) {
        return;
    }
    if (phase_ == phase::handling) {
        disarm();
        cancel_handler(cancel_reason::deadline);
        return;
    }
    close_socket();
}

void connection::on_drain()
{
    draining_ = true;
    if (phase_ == phase::waiting) {
        close_socket();
    }
}

void connection::on_drain_timeout()
{
    if (phase_ == phase::handling && !handler_done_) {
        // A handler already cancelled (its deadline, its client gone) is not the
        // shutdown's doing.
        if (cancel_handler(cancel_reason::shutdown)) {
            server_->count_cancelled();
        }
        return;
    }
    close_socket();
}

void connection::on_stop()
{
    cancel_handler(cancel_reason::shutdown);
    close_socket();
}

} // namespace tame::http::detail
