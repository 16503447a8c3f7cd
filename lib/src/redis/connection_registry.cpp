#include "connection_registry.hpp"

#include "connection_state.hpp"

#include <algorithm>

namespace tame::redis::detail {

boost::asio::execution_context::id connection_registry::id;

connection_registry::connection_registry(boost::asio::execution_context& context)
    : boost::asio::execution_context::service{context}
{
}

void connection_registry::add(const std::shared_ptr<connection_state>& state)
{
    const std::lock_guard lock{mutex_};
    std::erase_if(connections_, [](const auto& c) { return c.expired(); });
    connections_.push_back(state);
}

void connection_registry::shutdown()
{
    std::vector<std::weak_ptr<connection_state>> connections;
    {
        const std::lock_guard lock{mutex_};
        connections.swap(connections_);
    }
    // No thread runs the context any longer: the states may be touched here.
    for (const auto& weak : connections) {
        if (auto state = weak.lock()) {
            state->abandon();
        }
    }
}

} // namespace tame::redis::detail
