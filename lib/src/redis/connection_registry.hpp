#pragma once

// The connections of one execution context, so that its shutdown can let go of
// what they hold. A connection queues its commands itself (not in the
// context's services, as Asio's own I/O objects do), and their handlers may
// own what owns the connection (a semaphore's state, a subscription). When the
// io_context is destroyed without having run a connection's close, those
// cycles would outlive it; at shutdown the registry abandons every live
// connection's queues, destroying the handlers uninvoked, as the context does
// with its own operations.

#include <boost/asio/execution_context.hpp>

#include <memory>
#include <mutex>
#include <vector>

namespace tame::redis::detail {

class connection_state;

class connection_registry : public boost::asio::execution_context::service {
  public:
    static boost::asio::execution_context::id id;

    explicit connection_registry(boost::asio::execution_context& context);

    void add(const std::shared_ptr<connection_state>& state);

  private:
    void shutdown() override;

    std::mutex mutex_;
    std::vector<std::weak_ptr<connection_state>> connections_;
};

} // namespace tame::redis::detail
