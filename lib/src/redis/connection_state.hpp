#pragma once

// What a tame::redis::connection shares with its operations: the strand, the
// command and pub/sub links, and the subscriptions by channel.

#include "link.hpp"
#include "pending.hpp"

#include <tame/redis/connection.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tame::redis::detail {

/// One subscription's messages, on the connection's strand.
class subscription_state {
  public:
    subscription_state(std::shared_ptr<connection_state> connection, std::string channel)
        : connection{std::move(connection)}, channel{std::move(channel)}
    {
    }

    void deliver(message m, std::size_t max_buffered);
    void close();

    const std::shared_ptr<connection_state> connection;
    const std::string channel;
    std::deque<message> buffered;
    std::optional<pending_result<message>> receiver;
    bool gap = false;
    bool closed = false;
};

class connection_state : public std::enable_shared_from_this<connection_state> {
  public:
    connection_state(const asio::any_io_executor& ex, connection_options options);
    /// Connects the links' hooks to this state; once, after construction.
    void start();

    const asio::any_io_executor& executor() const noexcept { return executor_; }
    const asio::any_io_executor& strand() const noexcept { return strand_; }
    const connection_options& options() const noexcept { return options_; }

    /// From any thread: sends a formatted command for `handler`.
    void submit(std::string bytes, std::optional<eval_retry> retry, exec_handler handler);
    void subscribe(std::string channel, subscribe_handler handler);
    void receive(const std::shared_ptr<subscription_state>& sub, receive_handler handler);
    /// From any thread: the subscription is gone.
    void unsubscribe(std::shared_ptr<subscription_state> sub);
    void close();
    /// At the execution context's shutdown: drops every queued command and
    /// subscription, destroying their handlers without invoking them.
    void abandon();
    connection_stats stats() const;

  private:
    // On the strand.
    void on_message(reply r);
    void on_pubsub_connected(bool first);
    void on_pubsub_failed();
    void forget(const std::shared_ptr<subscription_state>& sub);
    void keep_alive();

    const asio::any_io_executor executor_;
    const asio::any_io_executor strand_;
    const connection_options options_;
    const std::shared_ptr<link> commands_;
    const std::shared_ptr<link> pubsub_;
    std::map<std::string, std::vector<std::shared_ptr<subscription_state>>> channels_;
    asio::steady_timer keepalive_; // PINGs the pub/sub socket while subscribed
    std::atomic<std::uint64_t> subscribed_{0};
    bool closed_ = false;
};

} // namespace tame::redis::detail
