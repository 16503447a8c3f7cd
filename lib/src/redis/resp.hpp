#pragma once

// RESP, through hiredis: the only file that includes it.

#include <tame/error.hpp>
#include <tame/redis/connection.hpp>
#include <tame/redis/reply.hpp>

#include <optional>
#include <string>
#include <string_view>

struct redisReader;

namespace tame::redis::detail {

/// `cmd` as a RESP array of bulk strings (redisFormatCommandArgv).
std::string format_command(const command& cmd);

/// hiredis's incremental reply parser: bytes in, replies out.
class reply_reader {
  public:
    reply_reader();
    ~reply_reader();
    reply_reader(const reply_reader&) = delete;
    reply_reader& operator=(const reply_reader&) = delete;

    /// Forgets any partial reply: a new connection starts clean.
    void reset();
    void feed(std::string_view bytes);
    /// The next whole reply, or none; `ec` is set (and stays) on bad input.
    std::optional<reply> next(error_code& ec);

  private:
    redisReader* reader_;
};

} // namespace tame::redis::detail
