#include <tame/redis/script.hpp>

// Boost's SHA1 (a detail header of Boost.Uuid, stable since 1.66): Redis
// names a cached script by the SHA1 of its source.
#include <boost/uuid/detail/sha1.hpp>

#include <cstdio>

namespace tame::redis {
namespace {

std::string sha1_hex(const std::string& text)
{
    boost::uuids::detail::sha1 hash;
    hash.process_bytes(text.data(), text.size());
    boost::uuids::detail::sha1::digest_type digest;
    hash.get_digest(digest);
    std::string hex(40, '0');
    for (int i = 0; i < 5; ++i) {
        std::snprintf(&hex[static_cast<std::size_t>(i) * 8], 9, "%08x", digest[i]);
    }
    return hex;
}

} // namespace

script::script(std::string source)
    : source_{std::make_shared<const std::string>(std::move(source))}, sha1_{sha1_hex(*source_)}
{
}

} // namespace tame::redis
