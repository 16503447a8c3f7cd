#include <tame/redis/reply.hpp>

#include <charconv>
#include <stdexcept>

namespace tame::redis {

reply reply::make_integer(std::int64_t value)
{
    reply r;
    r.kind_ = kind::integer;
    r.integer_ = value;
    return r;
}

reply reply::make_string(kind k, std::string text)
{
    reply r;
    r.kind_ = k;
    r.text_ = std::move(text);
    return r;
}

reply reply::make_array(std::vector<reply> elements)
{
    reply r;
    r.kind_ = kind::array;
    r.elements_ = std::move(elements);
    return r;
}

std::int64_t reply::as_integer() const
{
    if (kind_ == kind::integer) {
        return integer_;
    }
    if (kind_ == kind::string || kind_ == kind::status) {
        std::int64_t value = 0;
        const auto* end = text_.data() + text_.size();
        const auto [p, ec] = std::from_chars(text_.data(), end, value);
        if (ec == std::errc{} && p == end) {
            return value;
        }
    }
    throw std::invalid_argument{"a Redis reply that is not an integer"};
}

} // namespace tame::redis
