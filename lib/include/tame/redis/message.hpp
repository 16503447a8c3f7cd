#pragma once

#include <string>

namespace tame::redis {

/// A message published on a channel that a subscription listens to.
struct message {
    std::string channel;
    std::string payload;
    /// Messages may have been lost just before this one: the subscription was
    /// re-established after its connection dropped, or the receiver fell
    /// `max_buffered_messages` behind. Pub/sub delivers at most once; whoever
    /// relies on it should look again at what the messages stand for. A message
    /// that says only this has its channel and an empty payload.
    bool after_gap = false;
};

} // namespace tame::redis
