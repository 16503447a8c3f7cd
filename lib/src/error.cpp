#include <tame/error.hpp>

#include <boost/system/errc.hpp>

#include <string>

namespace tame {
namespace {

class tame_category final : public boost::system::error_category {
  public:
    // A fixed id lets two copies of this category (say, one per shared library)
    // still compare equal, as Boost.System recommends for library categories.
    constexpr tame_category() noexcept : error_category{0x7a3e'5c1d'9b20'4f68} {}

    const char* name() const noexcept override { return "tame"; }

    std::string message(int value) const override { return message(value, nullptr, 0); }

    const char* message(int value, char*, std::size_t) const noexcept override
    {
        switch (static_cast<errc>(value)) {
        case errc::timed_out:
            return "operation timed out";
        case errc::closed:
            return "object was closed";
        case errc::pool_overloaded:
            return "pool is overloaded";
        case errc::invalid_url:
            return "invalid URL";
        case errc::unsupported_scheme:
            return "unsupported URL scheme";
        case errc::redis_unavailable:
            return "Redis is unavailable";
        case errc::redis_error:
            return "Redis answered with an error";
        case errc::lease_lost:
            return "the lease was lost";
        case errc::breaker_open:
            return "the circuit breaker dropped the call";
        }
        return "unknown tame error";
    }

    // timed_out also compares equal to std::errc::timed_out, so generic code that
    // tests for a timeout condition recognises tame's deadlines.
    boost::system::error_condition default_error_condition(int value) const noexcept override
    {
        if (static_cast<errc>(value) == errc::timed_out) {
            return boost::system::errc::timed_out;
        }
        return {value, *this};
    }
};

} // namespace

const boost::system::error_category& category() noexcept
{
    static const tame_category instance;
    return instance;
}

} // namespace tame
