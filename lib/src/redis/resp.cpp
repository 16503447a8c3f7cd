#include "resp.hpp"

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include <boost/asio/error.hpp>

#include <cstdlib>
#include <new>
#include <vector>

namespace tame::redis::detail {
namespace {

reply convert(const redisReply& r)
{
    switch (r.type) {
    case REDIS_REPLY_INTEGER:
        return reply::make_integer(r.integer);
    case REDIS_REPLY_STRING:
        return reply::make_string(reply::kind::string, std::string(r.str, r.len));
    case REDIS_REPLY_STATUS:
        return reply::make_string(reply::kind::status, std::string(r.str, r.len));
    case REDIS_REPLY_ERROR:
        return reply::make_string(reply::kind::error, std::string(r.str, r.len));
    case REDIS_REPLY_ARRAY: {
        std::vector<reply> elements;
        elements.reserve(r.elements);
        for (std::size_t i = 0; i < r.elements; ++i) {
            elements.push_back(convert(*r.element[i]));
        }
        return reply::make_array(std::move(elements));
    }
    default:
        return reply::make_nil();
    }
}

} // namespace

std::string format_command(const command& cmd)
{
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    argv.reserve(cmd.size());
    lengths.reserve(cmd.size());
    for (const auto& arg : cmd) {
        argv.push_back(arg.data());
        lengths.push_back(arg.size());
    }
    char* formatted = nullptr;
    const long long n = redisFormatCommandArgv(&formatted, static_cast<int>(argv.size()),
                                               argv.data(), lengths.data());
    if (n < 0 || formatted == nullptr) {
        throw std::bad_alloc{};
    }
    std::string out(formatted, static_cast<std::size_t>(n));
    redisFreeCommand(formatted);
    return out;
}

reply_reader::reply_reader() : reader_{redisReaderCreate()}
{
    if (reader_ == nullptr) {
        throw std::bad_alloc{};
    }
}

reply_reader::~reply_reader()
{
    redisReaderFree(reader_);
}

void reply_reader::reset()
{
    redisReader* fresh = redisReaderCreate();
    if (fresh == nullptr) {
        throw std::bad_alloc{};
    }
    redisReaderFree(reader_);
    reader_ = fresh;
}

void reply_reader::feed(std::string_view bytes)
{
    if (redisReaderFeed(reader_, bytes.data(), bytes.size()) != REDIS_OK) {
        throw std::bad_alloc{};
    }
}

std::optional<reply> reply_reader::next(error_code& ec)
{
    void* raw = nullptr;
    if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
        ec = boost::asio::error::invalid_argument; // a protocol error: not RESP
        return std::nullopt;
    }
    if (raw == nullptr) {
        return std::nullopt;
    }
    auto* r = static_cast<redisReply*>(raw);
    reply out = convert(*r);
    freeReplyObject(r);
    return out;
}

} // namespace tame::redis::detail
