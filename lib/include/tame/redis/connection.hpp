#pragma once

#include <tame/error.hpp>
#include <tame/redis/connection_options.hpp>
#include <tame/redis/message.hpp>
#include <tame/redis/reply.hpp>
#include <tame/redis/script.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tame::detail {
class distributed_semaphore_state;
}

namespace tame::redis {

namespace asio = boost::asio;

/// A command and its arguments, each sent as a binary-safe bulk string.
using command = std::vector<std::string>;

/// The completion signature of a command: a server error reply completes with
/// errc::redis_error and the reply (its text says what went wrong).
using exec_signature = void(error_code, reply);

class subscription;

namespace detail {
class connection_state;
class subscription_state;
using exec_handler = asio::any_completion_handler<exec_signature>;
using subscribe_handler = asio::any_completion_handler<void(error_code, subscription)>;
using receive_handler = asio::any_completion_handler<void(error_code, message)>;

void start_exec(const std::shared_ptr<connection_state>& state, const command& cmd,
                exec_handler handler);
void start_eval(const std::shared_ptr<connection_state>& state, const script& lua,
                const command& keys, const command& args, exec_handler handler);
void start_subscribe(const std::shared_ptr<connection_state>& state, std::string channel,
                     subscribe_handler handler);
void start_receive(const std::shared_ptr<subscription_state>& state, receive_handler handler);
} // namespace detail

/// What a connection has done so far.
struct connection_stats {
    std::uint64_t commands = 0;   ///< commands sent (a NOSCRIPT fallback counts twice)
    std::uint64_t connects = 0;   ///< successful connections, first and later
    std::uint64_t failures = 0;   ///< failed attempts and dropped connections
    std::uint64_t subscribed = 0; ///< channels subscribed now
};

/// A channel's messages, as a stream: created by connection::async_subscribe,
/// unsubscribed when destroyed. Move-only.
class subscription {
  public:
    subscription() noexcept = default;
    subscription(subscription&&) noexcept = default;
    subscription& operator=(subscription&&) noexcept;
    subscription(const subscription&) = delete;
    subscription& operator=(const subscription&) = delete;
    ~subscription();

    bool is_open() const noexcept { return state_ != nullptr; }
    /// The channel listened to (empty when not open).
    const std::string& channel() const;

    /// The next message, in publication order: buffered ones at once, else
    /// the next to arrive. One receive at a time. Cancellable (terminal,
    /// partial, total): nothing is lost. errc::closed once the connection has
    /// closed.
    template <class Token>
    auto async_receive(Token&& token)
    {
        return asio::async_initiate<Token, void(error_code, message)>(
            [](auto handler, std::shared_ptr<detail::subscription_state> state) {
                detail::start_receive(state, std::move(handler));
            },
            token, state_);
    }

  private:
    friend class detail::connection_state;
    explicit subscription(std::shared_ptr<detail::subscription_state> state) noexcept
        : state_{std::move(state)}
    {
    }

    std::shared_ptr<detail::subscription_state> state_;
};

/// An Asio-native Redis connection: commands pipelined on one socket, pub/sub
/// on a second one (opened by the first subscription), both reconnected with
/// backoff. RESP is parsed by hiredis's reader; tame adds the Asio glue.
///
/// Every operation takes any completion token, completes exactly once on its
/// handler's associated executor (the connection's by default), never inside
/// the initiating call, and honours its cancellation slot. Cancelling a
/// command abandons the wait for its reply (terminal and partial
/// cancellation; total is ignored, since the command may have run): the
/// command may still run on the server. Commands run on the server in the
/// order they were issued from one thread, but for a script that Redis had
/// lost (NOSCRIPT after a restart or SCRIPT FLUSH): it runs, as EVAL, after the
/// commands already pipelined behind it.
///
/// When Redis cannot be reached, a command fails with errc::redis_unavailable
/// within connect_timeout plus the current backoff, or, once sent, within
/// reply_timeout. The connection reconnects by itself on the next command.
///
/// Thread safety: every member may be called from any thread. Destroying the
/// connection closes it (as close() does).
class connection {
  public:
    /// Connects lazily, on the first command or subscription; handlers
    /// without an associated executor complete on `ex`.
    connection(const asio::any_io_executor& ex, connection_options options);
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    const asio::any_io_executor& get_executor() const noexcept;
    /// The options given to the constructor.
    const connection_options& options() const noexcept;

    /// Sends `cmd` and completes with its reply.
    template <class Token>
    auto async_exec(command cmd, Token&& token)
    {
        return asio::async_initiate<Token, exec_signature>(
            [](auto handler, std::shared_ptr<detail::connection_state> state, command c) {
                detail::start_exec(state, c, std::move(handler));
            },
            token, state_, std::move(cmd));
    }

    /// Runs `lua` with `keys` and `args`: EVALSHA, and on NOSCRIPT the source
    /// (EVAL) once, which caches it again.
    template <class Token>
    auto async_eval(const script& lua, command keys, command args, Token&& token)
    {
        return asio::async_initiate<Token, exec_signature>(
            [&lua](auto handler, std::shared_ptr<detail::connection_state> state, command k,
                   command a) { detail::start_eval(state, lua, k, a, std::move(handler)); },
            token, state_, std::move(keys), std::move(args));
    }

    /// Subscribes to `channel` on the pub/sub socket; completes once Redis has
    /// confirmed, with the subscription. Several subscriptions to one channel
    /// each get every message. After a reconnection the channels are
    /// subscribed again, and the next message of each is marked after_gap.
    template <class Token>
    auto async_subscribe(std::string channel, Token&& token)
    {
        return asio::async_initiate<Token, void(error_code, subscription)>(
            [](auto handler, std::shared_ptr<detail::connection_state> state, std::string c) {
                detail::start_subscribe(state, std::move(c), std::move(handler));
            },
            token, state_, std::move(channel));
    }

    /// Closes both sockets: commands not yet answered and receives complete
    /// with errc::closed, and later ones at once.
    void close();

    connection_stats stats() const;

  private:
    // The semaphore's permits renew and release through the connection's
    // state, which they keep alive.
    friend class tame::detail::distributed_semaphore_state;

    std::shared_ptr<detail::connection_state> state_;
};

} // namespace tame::redis
