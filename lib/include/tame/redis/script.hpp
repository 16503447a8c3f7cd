#pragma once

#include <memory>
#include <string>

namespace tame::redis {

/// A Lua script that connection::async_eval() runs by its SHA1 (EVALSHA), so
/// that only the hash crosses the network; when Redis does not have it (a new
/// server, a restart, a SCRIPT FLUSH), the same call sends the source once
/// (EVAL), which caches it again.
///
/// Immutable; safe to share between threads and connections. Copies share the
/// source (a command in flight keeps one, to resend it on NOSCRIPT).
class script {
  public:
    /// Hashes `source` (SHA1) once, here.
    explicit script(std::string source);

    const std::string& source() const noexcept { return *source_; }
    /// The SHA1 of the source, in lowercase hex, as SCRIPT LOAD answers it.
    const std::string& sha1() const noexcept { return sha1_; }

  private:
    std::shared_ptr<const std::string> source_;
    std::string sha1_;
};

} // namespace tame::redis
