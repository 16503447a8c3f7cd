#include "link.hpp"

#include "resp.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <string_view>

namespace tame::redis::detail {

link::link(asio::any_io_executor strand, const connection_options& options, bool pubsub)
    : strand_{std::move(strand)}, options_{options}, pubsub_{pubsub}, resolver_{strand_},
      socket_{strand_}, connect_timer_{strand_}, reply_timer_{strand_}
{
}

link::~link() = default;

void link::send(std::shared_ptr<pending_command> cmd, bool first)
{
    if (state_ == state::closed) {
        if (cmd->result) {
            cmd->result->complete(errc::closed, reply{});
        }
        return;
    }
    if (first) {
        unsent_.push_front(std::move(cmd));
    } else {
        unsent_.push_back(std::move(cmd));
    }
    if (state_ == state::connected) {
        write_queued();
    } else if (state_ == state::idle) {
        connect_when_due();
    }
}

void link::close(error_code why)
{
    if (state_ == state::closed) {
        return;
    }
    state_ = state::closed;
    ++generation_;
    error_code ignored;
    resolver_.cancel();
    socket_.close(ignored);
    connect_timer_.cancel();
    reply_timer_.cancel();
    fail_sent(why);
    fail_unsent(why);
}

void link::abandon()
{
    state_ = state::closed;
    ++generation_;
    hooks_ = {};
    unsent_.clear();
    sent_.clear();
}

void link::connect_when_due()
{
    const auto now = clock::now();
    if (now >= next_attempt_) {
        connect();
        return;
    }
    state_ = state::waiting_to_retry;
    connect_timer_.expires_at(next_attempt_);
    connect_timer_.async_wait(
        asio::bind_executor(strand_, [self = shared_from_this(), g = generation_](error_code) {
            if (g == self->generation_ && self->state_ == state::waiting_to_retry) {
                self->connect();
            }
        }));
}

void link::connect()
{
    state_ = state::connecting;
    const std::uint64_t g = ++generation_;
    auto self = shared_from_this();
    connect_timer_.expires_after(options_.connect_timeout);
    connect_timer_.async_wait(asio::bind_executor(strand_, [self, g](error_code ec) {
        // Connecting, or connected and not yet ready: the attempt took too long.
        if (!ec && g == self->generation_ &&
            (self->state_ == state::connecting || self->handshaking_)) {
            self->attempt_failed(g, errc::redis_unavailable);
        }
    }));
    resolver_.async_resolve(
        options_.url.host, std::to_string(options_.url.port),
        asio::bind_executor(
            strand_, [self, g](error_code ec, asio::ip::tcp::resolver::results_type endpoints) {
                if (g != self->generation_) {
                    return;
                }
                if (ec) {
                    self->attempt_failed(g, ec);
                    return;
                }
                asio::async_connect(
                    self->socket_, endpoints,
                    asio::bind_executor(self->strand_, [self, g](error_code ec, const auto&) {
                        if (g != self->generation_) {
                            return;
                        }
                        if (ec) {
                            self->attempt_failed(g, ec);
                            return;
                        }
                        self->on_connected(g);
                    }));
            }));
}

void link::on_connected(std::uint64_t)
{
    // Connected, but not yet ready: a Redis that is loading its data accepts
    // connections and answers LOADING. The handshake (PING, and SELECT of the
    // database) goes first and alone; commands wait for its answers.
    state_ = state::connected;
    handshaking_ = true;
    error_code ignored;
    socket_.set_option(asio::ip::tcp::no_delay{true}, ignored);
    reader_.reset();
    auto ping = std::make_shared<pending_command>(format_command({"PING"}), std::nullopt);
    ping->handshake = true;
    unsent_.push_front(std::move(ping));
    if (options_.url.db != 0) {
        auto select = std::make_shared<pending_command>(
            format_command({"SELECT", std::to_string(options_.url.db)}), std::nullopt);
        select->handshake = true;
        unsent_.insert(unsent_.begin() + 1, std::move(select));
    }
    read();
    write_queued();
}

void link::on_ready()
{
    handshaking_ = false;
    connect_timer_.cancel();
    backoff_ = std::chrono::milliseconds{0};
    counters_.connects.fetch_add(1, std::memory_order_relaxed);
    const bool first = !connected_before_;
    connected_before_ = true;
    if (hooks_.on_connected) {
        hooks_.on_connected(first);
    }
    write_queued();
}

void link::attempt_failed(std::uint64_t generation, error_code)
{
    const bool attempting =
        state_ == state::connecting || (state_ == state::connected && handshaking_);
    if (generation != generation_ || !attempting) {
        return;
    }
    // The handshake's own commands die with the socket.
    sent_.clear();
    std::erase_if(unsent_, [](const auto& cmd) { return cmd->handshake; });
    tear_down();
    backoff_ = std::clamp(backoff_ * 2, options_.min_backoff, options_.max_backoff);
    next_attempt_ = clock::now() + backoff_;
    // Whatever waited for this attempt learns that Redis is unavailable.
    fail_unsent(errc::redis_unavailable);
    if (hooks_.on_failed) {
        hooks_.on_failed();
    }
}

void link::tear_down()
{
    // Callbacks of this socket find a newer generation and do nothing.
    ++generation_;
    counters_.failures.fetch_add(1, std::memory_order_relaxed);
    error_code ignored;
    resolver_.cancel();
    socket_.close(ignored);
    connect_timer_.cancel();
    reply_timer_.cancel();
    reply_timer_armed_ = false;
    writing_ = false;
    handshaking_ = false;
    state_ = state::idle;
}

void link::drop(error_code why)
{
    if (state_ != state::connected) {
        return;
    }
    if (handshaking_) {
        attempt_failed(generation_, why); // not ready yet: a failed attempt, with backoff
        return;
    }
    tear_down();
    // Sent commands may or may not have run: their callers are told. Those not
    // yet sent go on the next connection, which is tried at once.
    fail_sent(why);
    next_attempt_ = clock::now();
    if (hooks_.on_failed) {
        hooks_.on_failed();
    }
    if (!unsent_.empty()) {
        connect_when_due();
    }
}

void link::write_queued()
{
    if (writing_ || state_ != state::connected || unsent_.empty()) {
        return;
    }
    write_buffer_.clear();
    resends_ahead_ = 0;
    const auto now = clock::now();
    while (!unsent_.empty()) {
        if (handshaking_ && !unsent_.front()->handshake) {
            break; // commands wait until the handshake has been answered
        }
        auto cmd = std::move(unsent_.front());
        unsent_.pop_front();
        if (cmd->abandoned()) {
            continue; // cancelled before it was sent: never sent
        }
        write_buffer_ += cmd->bytes;
        cmd->sent_at = now;
        sent_.push_back(std::move(cmd));
        counters_.commands.fetch_add(1, std::memory_order_relaxed);
    }
    if (write_buffer_.empty()) {
        return;
    }
    writing_ = true;
    watch_replies();
    asio::async_write(socket_, asio::buffer(write_buffer_),
                      asio::bind_executor(strand_, [self = shared_from_this(),
                                                    g = generation_](error_code ec, std::size_t) {
                          if (g != self->generation_) {
                              return;
                          }
                          self->writing_ = false;
                          if (ec) {
                              self->drop(errc::redis_unavailable);
                              return;
                          }
                          self->write_queued();
                      }));
}

void link::read()
{
    socket_.async_read_some(
        asio::buffer(read_buffer_),
        asio::bind_executor(
            strand_, [self = shared_from_this(), g = generation_](error_code ec, std::size_t n) {
                if (g != self->generation_) {
                    return;
                }
                if (ec) {
                    self->drop(errc::redis_unavailable);
                    return;
                }
                error_code bad;
                self->reader_.feed(std::string_view{self->read_buffer_.data(), n});
                while (auto r = self->reader_.next(bad)) {
                    self->on_reply(std::move(*r));
                    if (g != self->generation_) {
                        return; // the reply closed or dropped the link
                    }
                }
                if (bad) {
                    self->drop(errc::redis_unavailable);
                    return;
                }
                self->read();
            }));
}

void link::on_reply(reply r)
{
    if (pubsub_ && r.type() == reply::kind::array && !r.elements().empty()) {
        const auto& head = r.elements().front().text();
        if (head == "message" || head == "pmessage") {
            if (hooks_.on_push) {
                hooks_.on_push(std::move(r));
            }
            return;
        }
    }
    if (sent_.empty()) {
        drop(errc::redis_unavailable); // a reply to nothing: the stream is out of step
        return;
    }
    auto cmd = std::move(sent_.front());
    sent_.pop_front();
    if (cmd->handshake) {
        on_handshake_reply(r);
        return;
    }
    if (r.is_error() && cmd->retry && r.text().rfind("NOSCRIPT", 0) == 0) {
        // The server lost the script (a restart, SCRIPT FLUSH): its source
        // now, which caches it again.
        command eval{"EVAL", cmd->retry->lua.source()};
        eval.insert(eval.end(), cmd->retry->tail.begin(), cmd->retry->tail.end());
        cmd->bytes = format_command(eval);
        cmd->retry.reset();
        // Ahead of the commands not yet sent, and behind the resends of this
        // same batch: resends keep their order.
        unsent_.insert(unsent_.begin() +
                           static_cast<std::ptrdiff_t>(std::min(resends_ahead_, unsent_.size())),
                       std::move(cmd));
        ++resends_ahead_;
        write_queued();
        return;
    }
    if (!cmd->result) {
        return; // the link's own command (a re-subscription, a PING)
    }
    const error_code ec = r.is_error() ? error_code{errc::redis_error} : error_code{};
    cmd->result->complete(ec, std::move(r));
}

void link::on_handshake_reply(const reply& r)
{
    if (r.is_error()) {
        if (r.text().find("DB index") != std::string::npos) {
            // SELECT of a database out of range: no command could run as
            // asked on this connection, now or later.
            close(errc::redis_error);
            return;
        }
        // LOADING, BUSY, MASTERDOWN, "max number of clients reached", a
        // proxy's error...: not ready; tried again after the backoff.
        attempt_failed(generation_, errc::redis_unavailable);
        return;
    }
    const bool last =
        std::none_of(sent_.begin(), sent_.end(), [](const auto& cmd) { return cmd->handshake; }) &&
        std::none_of(unsent_.begin(), unsent_.end(),
                     [](const auto& cmd) { return cmd->handshake; });
    if (last) {
        on_ready();
    }
}

void link::watch_replies()
{
    if (reply_timer_armed_ || sent_.empty()) {
        return;
    }
    reply_timer_armed_ = true;
    reply_timer_.expires_at(sent_.front()->sent_at + options_.reply_timeout);
    reply_timer_.async_wait(
        asio::bind_executor(strand_, [self = shared_from_this(), g = generation_](error_code) {
            if (g != self->generation_) {
                return;
            }
            self->reply_timer_armed_ = false;
            if (self->sent_.empty()) {
                return;
            }
            if (clock::now() >= self->sent_.front()->sent_at + self->options_.reply_timeout) {
                self->drop(errc::redis_unavailable);
                return;
            }
            self->watch_replies();
        }));
}

void link::fail_unsent(error_code why)
{
    auto failed = std::move(unsent_);
    unsent_.clear();
    for (auto& cmd : failed) {
        if (cmd->result) {
            cmd->result->complete(why, reply{});
        }
    }
}

void link::fail_sent(error_code why)
{
    auto failed = std::move(sent_);
    sent_.clear();
    for (auto& cmd : failed) {
        if (cmd->result) {
            cmd->result->complete(why, reply{});
        }
    }
}

} // namespace tame::redis::detail
