#pragma once

// One socket to Redis, driven from the connection's strand: commands are
// queued, written in batches (pipelining) and matched to replies in order;
// the socket is (re)connected on demand, with backoff after failures.

#include "pending.hpp"
#include "resp.hpp"

#include <tame/redis/connection_options.hpp>
#include <tame/redis/reply.hpp>
#include <tame/redis/script.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace tame::redis::detail {

using clock = std::chrono::steady_clock;

/// What an EVALSHA becomes when the server does not have the script.
struct eval_retry {
    script lua;
    command tail; ///< numkeys, keys, args
};

/// A command on its way: its bytes in RESP, and who waits for its reply.
struct pending_command {
    pending_command(std::string bytes, std::optional<pending_result<reply>> result)
        : bytes{std::move(bytes)}, result{std::move(result)}
    {
    }

    std::string bytes;
    /// For an EVALSHA: its script, keys and arguments, to send as EVAL if
    /// Redis answers NOSCRIPT (formatted only then: sources are long).
    std::optional<eval_retry> retry;
    /// Empty for the link's own commands (the handshake, a replayed SUBSCRIBE).
    std::optional<pending_result<reply>> result;
    /// Part of the handshake of a new socket (PING, SELECT): sent before any
    /// other command, whose answers make the socket ready.
    bool handshake = false;
    clock::time_point sent_at{};

    bool abandoned() const noexcept { return result && result->done(); }
};

/// Counted on the strand, read from any thread.
struct link_counters {
    std::atomic<std::uint64_t> commands{0};
    std::atomic<std::uint64_t> connects{0};
    std::atomic<std::uint64_t> failures{0};
};

/// Every member runs on the strand given to the constructor.
class link : public std::enable_shared_from_this<link> {
  public:
    struct hooks {
        /// A pub/sub message (an array whose first element is "message").
        std::function<void(reply)> on_push;
        /// After each connection that answered its handshake, before queued
        /// commands are sent.
        std::function<void(bool first)> on_connected;
        /// After a connection dropped or an attempt failed.
        std::function<void()> on_failed;
    };

    link(asio::any_io_executor strand, const connection_options& options, bool pubsub);
    ~link();
    link(const link&) = delete;
    link& operator=(const link&) = delete;

    void set_hooks(hooks h) { hooks_ = std::move(h); }

    /// Queues `cmd` (at the head of the queue when `first`) and sends it as
    /// soon as the socket is up.
    void send(std::shared_ptr<pending_command> cmd, bool first = false);

    /// Fails every command with `why` and refuses later ones.
    void close(error_code why);
    /// Drops every command without completing it (the context is shutting
    /// down) and refuses later ones.
    void abandon();

    bool is_closed() const noexcept { return state_ == state::closed; }
    const link_counters& counters() const noexcept { return counters_; }

  private:
    enum class state { idle, waiting_to_retry, connecting, connected, closed };

    void connect_when_due();
    void connect();
    void on_connected(std::uint64_t generation);
    void on_handshake_reply(const reply& r);
    void on_ready();
    void attempt_failed(std::uint64_t generation, error_code ec);
    /// Closes the socket of a failed attempt or a dropped connection: idle again.
    void tear_down();
    void drop(error_code why);
    void write_queued();
    void read();
    void on_reply(reply r);
    void watch_replies();
    void fail_unsent(error_code why);
    void fail_sent(error_code why);

    const asio::any_io_executor strand_;
    const connection_options options_;
    const bool pubsub_;
    hooks hooks_;

    state state_ = state::idle;
    std::uint64_t generation_ = 0; // callbacks of an older socket are stale
    bool connected_before_ = false;
    bool handshaking_ = false; // connected, the handshake not yet answered
    asio::ip::tcp::resolver resolver_;
    asio::ip::tcp::socket socket_;
    asio::steady_timer connect_timer_; // the attempt's deadline, or the backoff
    asio::steady_timer reply_timer_;   // the oldest sent command's deadline
    bool reply_timer_armed_ = false;
    std::chrono::milliseconds backoff_{0};
    clock::time_point next_attempt_{};

    std::deque<std::shared_ptr<pending_command>> unsent_;
    std::deque<std::shared_ptr<pending_command>> sent_;
    bool writing_ = false;
    std::size_t resends_ahead_ = 0; // NOSCRIPT resends queued since the last write
    std::string write_buffer_;
    std::array<char, 16384> read_buffer_{};
    reply_reader reader_;
    link_counters counters_;
};

} // namespace tame::redis::detail
