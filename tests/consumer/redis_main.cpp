// Uses the installed tame::redis: a URL is read, and a distributed semaphore is
// made on a connection (no Redis runs here, so nothing is sent).
#include <tame/redis/distributed_semaphore.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdio>

int main()
{
    boost::asio::io_context io;
    tame::redis::connection_options options;
    options.url = tame::redis::parse_url("redis://127.0.0.1:6390/2");
    tame::redis::connection redis{io.get_executor(), options};
    tame::distributed_semaphore limit{redis, "consumer", 3};

    const bool ok = options.url.port == 6390 && options.url.db == 2 && limit.name() == "consumer";
    std::printf("redis consumer: %s\n", ok ? "ok" : "failed");
    return ok ? 0 : 1;
}
