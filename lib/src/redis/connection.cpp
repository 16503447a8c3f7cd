#include "connection_registry.hpp"
#include "connection_state.hpp"
#include "resp.hpp"

#include <tame/redis/connection.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/system_executor.hpp>

#include <algorithm>

namespace tame::redis {
namespace detail {
namespace {

constexpr bool abandons(asio::cancellation_type type) noexcept
{
    // A command that was sent may have run: only terminal and partial
    // cancellation may give up on its reply.
    return (type & (asio::cancellation_type::terminal | asio::cancellation_type::partial)) !=
           asio::cancellation_type::none;
}

/// In a command's caller's slot: gives up the wait for the reply, on the strand.
class command_canceller {
  public:
    command_canceller(std::weak_ptr<pending_command> cmd, asio::any_io_executor strand)
        : cmd_{std::move(cmd)}, strand_{std::move(strand)}
    {
    }

    void operator()(asio::cancellation_type type)
    {
        if (!abandons(type)) {
            return;
        }
        asio::post(strand_, [cmd = cmd_] {
            if (auto c = cmd.lock()) {
                c->result->complete(asio::error::operation_aborted, reply{});
            }
        });
    }

  private:
    std::weak_ptr<pending_command> cmd_;
    asio::any_io_executor strand_;
};

/// In a receiver's slot: gives up the receive (no message is taken).
class receive_canceller {
  public:
    receive_canceller(std::weak_ptr<subscription_state> sub, asio::any_io_executor strand)
        : sub_{std::move(sub)}, strand_{std::move(strand)}
    {
    }

    void operator()(asio::cancellation_type)
    {
        asio::post(strand_, [sub = sub_] {
            if (auto s = sub.lock(); s && s->receiver) {
                s->receiver->complete(asio::error::operation_aborted, message{});
                s->receiver.reset();
            }
        });
    }

  private:
    std::weak_ptr<subscription_state> sub_;
    asio::any_io_executor strand_;
};

std::shared_ptr<pending_command> internal_command(const command& cmd)
{
    return std::make_shared<pending_command>(format_command(cmd), std::nullopt);
}

} // namespace

void subscription_state::deliver(message m, std::size_t max_buffered)
{
    if (closed) {
        return;
    }
    if (receiver && buffered.empty()) {
        m.after_gap = m.after_gap || std::exchange(gap, false);
        receiver->complete({}, std::move(m));
        receiver.reset();
        return;
    }
    buffered.push_back(std::move(m));
    if (buffered.size() > std::max<std::size_t>(max_buffered, 1)) {
        buffered.pop_front();
        gap = true;
    }
}

void subscription_state::close()
{
    closed = true;
    buffered.clear();
    if (receiver) {
        receiver->complete(errc::closed, message{});
        receiver.reset();
    }
}

connection_state::connection_state(const asio::any_io_executor& ex, connection_options options)
    : executor_{ex}, strand_{asio::make_strand(ex)}, options_{std::move(options)},
      commands_{std::make_shared<link>(strand_, options_, false)},
      pubsub_{std::make_shared<link>(strand_, options_, true)}, keepalive_{strand_}
{
}

void connection_state::start()
{
    std::weak_ptr<connection_state> weak = shared_from_this();
    link::hooks hooks;
    hooks.on_push = [weak](reply r) {
        if (auto self = weak.lock()) {
            self->on_message(std::move(r));
        }
    };
    hooks.on_connected = [weak](bool first) {
        if (auto self = weak.lock()) {
            self->on_pubsub_connected(first);
        }
    };
    hooks.on_failed = [weak] {
        if (auto self = weak.lock()) {
            self->on_pubsub_failed();
        }
    };
    pubsub_->set_hooks(std::move(hooks));
}

void connection_state::submit(std::string bytes, std::optional<eval_retry> retry,
                              exec_handler handler)
{
    auto cmd = std::make_shared<pending_command>(
        std::move(bytes), pending_result<reply>{std::move(handler), executor_});
    cmd->retry = std::move(retry);
    cmd->result->arm<command_canceller>(std::weak_ptr<pending_command>{cmd}, strand_);
    asio::post(strand_, [self = shared_from_this(), cmd = std::move(cmd)]() mutable {
        self->commands_->send(std::move(cmd));
    });
}

void connection_state::subscribe(std::string channel, subscribe_handler handler)
{
    auto result = std::make_shared<pending_result<subscription>>(std::move(handler), executor_);
    result->arm<abandon_canceller<subscription>>(
        std::weak_ptr<pending_result<subscription>>{result}, strand_);
    auto sub = std::make_shared<subscription_state>(shared_from_this(), std::move(channel));
    // The SUBSCRIBE's own reply, on the strand: the caller gets its
    // subscription once Redis has confirmed it.
    auto confirmed = [self = shared_from_this(), sub, result](error_code ec, reply) {
        if (result->done()) {
            self->forget(sub); // the caller gave up waiting: nobody will receive
            return;
        }
        if (ec) {
            self->forget(sub);
            result->complete(ec, subscription{});
            return;
        }
        result->complete({}, subscription{sub});
    };
    auto cmd = std::make_shared<pending_command>(
        format_command({"SUBSCRIBE", sub->channel}),
        pending_result<reply>{asio::bind_executor(strand_, std::move(confirmed)), strand_});
    asio::post(strand_, [self = shared_from_this(), sub, cmd = std::move(cmd)]() mutable {
        if (self->closed_) {
            cmd->result->complete(errc::closed, reply{});
            return;
        }
        const bool first = self->channels_.empty();
        self->channels_[sub->channel].push_back(sub);
        self->subscribed_.store(self->channels_.size(), std::memory_order_relaxed);
        self->pubsub_->send(std::move(cmd));
        if (first) {
            self->keep_alive();
        }
    });
}

void connection_state::keep_alive()
{
    // A subscribed socket only reads: a peer gone without a reset (a host
    // down, a NAT that forgot the flow) would never be noticed. A PING every
    // reply_timeout puts the reply watchdog on it: a dead socket is dropped
    // and resubscribed, and the subscribers hear of the gap.
    keepalive_.expires_after(std::max(options_.reply_timeout, std::chrono::milliseconds{100}));
    keepalive_.async_wait([weak = weak_from_this()](error_code ec) {
        auto self = weak.lock();
        if (ec || !self || self->closed_ || self->channels_.empty()) {
            return;
        }
        self->pubsub_->send(internal_command({"PING"}));
        self->keep_alive();
    });
}

void connection_state::receive(const std::shared_ptr<subscription_state>& sub,
                               receive_handler handler)
{
    pending_result<message> result{std::move(handler), executor_};
    result.arm<receive_canceller>(std::weak_ptr<subscription_state>{sub}, strand_);
    asio::post(strand_, [sub, result = std::move(result)]() mutable {
        if (sub->closed) {
            result.complete(errc::closed, message{});
            return;
        }
        if (sub->receiver) {
            // One receive at a time: a second one is a caller's bug.
            result.complete(asio::error::operation_not_supported, message{});
            return;
        }
        if (!sub->buffered.empty()) {
            message m = std::move(sub->buffered.front());
            sub->buffered.pop_front();
            m.after_gap = m.after_gap || std::exchange(sub->gap, false);
            result.complete({}, std::move(m));
            return;
        }
        sub->receiver.emplace(std::move(result));
    });
}

void connection_state::unsubscribe(std::shared_ptr<subscription_state> sub)
{
    asio::post(strand_, [self = shared_from_this(), sub = std::move(sub)] {
        sub->close();
        self->forget(sub);
    });
}

void connection_state::forget(const std::shared_ptr<subscription_state>& sub)
{
    const auto it = channels_.find(sub->channel);
    if (it == channels_.end()) {
        return;
    }
    auto& subs = it->second;
    subs.erase(std::remove(subs.begin(), subs.end(), sub), subs.end());
    if (subs.empty()) {
        channels_.erase(it);
        if (!closed_) {
            pubsub_->send(internal_command({"UNSUBSCRIBE", sub->channel}));
        }
    }
    subscribed_.store(channels_.size(), std::memory_order_relaxed);
}

void connection_state::on_message(reply r)
{
    const auto& parts = r.elements();
    // ["message", channel, payload] or ["pmessage", pattern, channel, payload]
    const std::size_t at = parts.front().text() == "pmessage" ? 2 : 1;
    if (parts.size() < at + 2) {
        return;
    }
    const auto it = channels_.find(parts[at].text());
    if (it == channels_.end()) {
        return;
    }
    for (const auto& sub : it->second) {
        sub->deliver(message{parts[at].text(), parts[at + 1].text(), false},
                     options_.max_buffered_messages);
    }
}

void connection_state::on_pubsub_connected(bool first)
{
    if (first) {
        return;
    }
    // A new socket: the channels are subscribed again, and each subscriber
    // hears that messages may have been lost meanwhile.
    for (const auto& [channel, subs] : channels_) {
        pubsub_->send(internal_command({"SUBSCRIBE", channel}), true);
        for (const auto& sub : subs) {
            sub->deliver(message{channel, {}, true}, options_.max_buffered_messages);
        }
    }
}

void connection_state::on_pubsub_failed()
{
    // While anyone listens, keep trying (with the link's backoff): a PING
    // that waits in the queue makes the link connect again.
    if (!channels_.empty() && !closed_) {
        pubsub_->send(internal_command({"PING"}));
    }
}

void connection_state::close()
{
    asio::post(strand_, [self = shared_from_this()] {
        if (self->closed_) {
            return;
        }
        self->closed_ = true;
        self->commands_->close(errc::closed);
        self->pubsub_->close(errc::closed);
        self->keepalive_.cancel();
        auto channels = std::move(self->channels_);
        self->channels_.clear();
        for (auto& [channel, subs] : channels) {
            for (auto& sub : subs) {
                sub->close();
            }
        }
        self->subscribed_.store(0, std::memory_order_relaxed);
    });
}

void connection_state::abandon()
{
    closed_ = true;
    commands_->abandon();
    pubsub_->abandon();
    auto channels = std::move(channels_);
    channels_.clear();
    for (auto& [channel, subs] : channels) {
        for (auto& sub : subs) {
            sub->buffered.clear();
            sub->receiver.reset();
            sub->closed = true;
        }
    }
}

connection_stats connection_state::stats() const
{
    connection_stats s;
    for (const auto* l : {commands_.get(), pubsub_.get()}) {
        s.commands += l->counters().commands.load(std::memory_order_relaxed);
        s.connects += l->counters().connects.load(std::memory_order_relaxed);
        s.failures += l->counters().failures.load(std::memory_order_relaxed);
    }
    s.subscribed = subscribed_.load(std::memory_order_relaxed);
    return s;
}

void start_exec(const std::shared_ptr<connection_state>& state, const command& cmd,
                exec_handler handler)
{
    state->submit(format_command(cmd), std::nullopt, std::move(handler));
}

void start_eval(const std::shared_ptr<connection_state>& state, const script& lua,
                const command& keys, const command& args, exec_handler handler)
{
    eval_retry retry{lua, {std::to_string(keys.size())}};
    retry.tail.insert(retry.tail.end(), keys.begin(), keys.end());
    retry.tail.insert(retry.tail.end(), args.begin(), args.end());
    command cmd{"EVALSHA", lua.sha1()};
    cmd.insert(cmd.end(), retry.tail.begin(), retry.tail.end());
    state->submit(format_command(cmd), std::move(retry), std::move(handler));
}

void start_subscribe(const std::shared_ptr<connection_state>& state, std::string channel,
                     subscribe_handler handler)
{
    state->subscribe(std::move(channel), std::move(handler));
}

void start_receive(const std::shared_ptr<subscription_state>& state, receive_handler handler)
{
    if (!state) {
        pending_result<message> result{std::move(handler),
                                       asio::any_io_executor{asio::system_executor{}}};
        result.complete(errc::closed, message{});
        return;
    }
    state->connection->receive(state, std::move(handler));
}

} // namespace detail

subscription& subscription::operator=(subscription&& other) noexcept
{
    if (this != &other) {
        if (state_) {
            state_->connection->unsubscribe(std::move(state_));
        }
        state_ = std::move(other.state_);
    }
    return *this;
}

subscription::~subscription()
{
    if (state_) {
        state_->connection->unsubscribe(std::move(state_));
    }
}

const std::string& subscription::channel() const
{
    static const std::string none;
    return state_ ? state_->channel : none;
}

connection::connection(const asio::any_io_executor& ex, connection_options options)
    : state_{std::make_shared<detail::connection_state>(ex, std::move(options))}
{
    state_->start();
    asio::use_service<detail::connection_registry>(asio::query(ex, asio::execution::context))
        .add(state_);
}

connection::~connection()
{
    state_->close();
}

const asio::any_io_executor& connection::get_executor() const noexcept
{
    return state_->executor();
}

const connection_options& connection::options() const noexcept
{
    return state_->options();
}

void connection::close()
{
    state_->close();
}

connection_stats connection::stats() const
{
    return state_->stats();
}

} // namespace tame::redis
