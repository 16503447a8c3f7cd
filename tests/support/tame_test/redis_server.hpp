#pragma once

// A real redis-server (Debian's), started by a test on a free loopback port in
// a directory of its own, and stopped by it: never a fixed port, never the
// system's service. It keeps an append-only file, so that a restart (stop()
// then start()) keeps its data, as a production Redis with persistence does.

#include <tame/redis/connection_options.hpp>
#include <tame/redis/url.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace tame_test {

/// A loopback TCP port nothing listens on now (the kernel's pick).
inline std::uint16_t free_loopback_port()
{
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        if (fd >= 0) {
            ::close(fd);
        }
        throw std::runtime_error{"free_loopback_port: no port to bind"};
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

/// Whether a Redis on 127.0.0.1:`port` answers PING with PONG: it accepts
/// connections and has loaded its data (a loading one answers LOADING).
inline bool answers_ping(std::uint16_t port)
{
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return false;
    }
    timeval limit{0, 500 * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
        char answer[64] = {};
        const auto n = ::recv(fd, answer, sizeof answer - 1, 0);
        ok = n >= 5 && std::string_view{answer, static_cast<std::size_t>(n)}.starts_with("+PONG");
    }
    ::close(fd);
    return ok;
}

class redis_server {
  public:
    redis_server()
    {
        char dir[] = "/tmp/tame-redis-XXXXXX";
        if (::mkdtemp(dir) == nullptr) {
            throw std::runtime_error{"redis_server: mkdtemp failed"};
        }
        dir_ = dir;
        // Another process may take the chosen port before redis-server does:
        // then it exits at once, and another port is tried.
        for (int attempt = 0; attempt < 5; ++attempt) {
            port_ = free_loopback_port();
            if (launch()) {
                return;
            }
        }
        throw std::runtime_error{"redis_server: redis-server did not start (is it installed? "
                                 "cmake/install-deps.sh installs it); see " +
                                 dir_ + "/redis.log"};
    }

    ~redis_server()
    {
        resume();
        stop();
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }

    redis_server(const redis_server&) = delete;
    redis_server& operator=(const redis_server&) = delete;

    std::uint16_t port() const noexcept { return port_; }
    tame::redis::url url() const { return {"127.0.0.1", port_, 0}; }
    const std::string& dir() const noexcept { return dir_; }
    bool running() const noexcept { return pid_ > 0; }

    /// Shuts the server down as an operator would (SIGTERM: it writes its
    /// append-only file and exits) and waits for it.
    void stop()
    {
        if (pid_ <= 0) {
            return;
        }
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
    }

    /// Starts it again, on the same port and directory (with its data).
    void start()
    {
        if (pid_ > 0) {
            return;
        }
        for (int attempt = 0; attempt < 50 && !launch(); ++attempt) {
            // The old socket may linger for a moment.
            std::this_thread::sleep_for(std::chrono::milliseconds{100});
        }
        if (pid_ <= 0) {
            throw std::runtime_error{"redis_server: could not restart on port " +
                                     std::to_string(port_)};
        }
    }

    /// Freezes it (SIGSTOP): connections stay open, nothing is answered.
    void pause()
    {
        if (pid_ > 0 && !paused_) {
            ::kill(pid_, SIGSTOP);
            paused_ = true;
        }
    }

    void resume()
    {
        if (pid_ > 0 && paused_) {
            ::kill(pid_, SIGCONT);
            paused_ = false;
        }
    }

  private:
    /// Starts redis-server and waits until it answers PING; false if it
    /// exited first (its port was taken) or did not come up in 10 s.
    bool launch()
    {
        const std::string port = std::to_string(port_);
        std::vector<std::string> args{"redis-server",
                                      "--port",
                                      port,
                                      "--bind",
                                      "127.0.0.1",
                                      "--save",
                                      "",
                                      "--appendonly",
                                      "yes",
                                      "--dir",
                                      dir_,
                                      "--logfile",
                                      dir_ + "/redis.log",
                                      "--daemonize",
                                      "no"};
        std::vector<char*> argv;
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        pid_t pid = -1;
        if (::posix_spawnp(&pid, "redis-server", nullptr, nullptr, argv.data(), environ) != 0) {
            return false;
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid, &status, WNOHANG) == pid) {
                return false; // it exited
            }
            if (answers_ping(port_)) {
                pid_ = pid;
                return true;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{10});
        }
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        return false;
    }

    std::string dir_;
    std::uint16_t port_ = 0;
    pid_t pid_ = -1;
    bool paused_ = false;
};

/// Options for a connection to `server` in a test: short timeouts and
/// backoff, so that outages are seen (and ridden out) in milliseconds.
inline tame::redis::connection_options test_connection_options(const redis_server& server)
{
    using namespace std::chrono_literals;
    tame::redis::connection_options o;
    o.url = server.url();
    o.connect_timeout = 300ms;
    o.reply_timeout = 500ms;
    o.min_backoff = 20ms;
    o.max_backoff = 200ms;
    return o;
}

} // namespace tame_test
