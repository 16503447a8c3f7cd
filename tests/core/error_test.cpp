#include <tame/error.hpp>

#include <boost/system/errc.hpp>

#include <catch2/catch.hpp>

#include <string>

TEST_CASE("tame errors belong to the category named tame", "[core][error]")
{
    const tame::error_code ec = tame::errc::closed;

    CHECK(ec.category() == tame::category());
    CHECK(std::string{ec.category().name()} == "tame");
}

TEST_CASE("every tame error has its own message", "[core][error]")
{
    using tame::errc;

    CHECK(tame::error_code{errc::timed_out}.message() == "operation timed out");
    CHECK(tame::error_code{errc::closed}.message() == "object was closed");
    CHECK(tame::error_code{errc::pool_overloaded}.message() == "pool is overloaded");
    CHECK(tame::error_code{errc::invalid_url}.message() == "invalid URL");
    CHECK(tame::error_code{errc::unsupported_scheme}.message() == "unsupported URL scheme");
    CHECK(tame::error_code{errc::redis_unavailable}.message() == "Redis is unavailable");
    CHECK(tame::error_code{errc::redis_error}.message() == "Redis answered with an error");
    CHECK(tame::error_code{errc::lease_lost}.message() == "the lease was lost");
    CHECK(tame::error_code{errc::breaker_open}.message() == "the circuit breaker dropped the call");
    CHECK(tame::error_code{99, tame::category()}.message() == "unknown tame error");
}

TEST_CASE("timed_out matches the generic timed_out condition", "[core][error]")
{
    const tame::error_code ec = tame::errc::timed_out;

    CHECK(ec == boost::system::errc::timed_out);
    CHECK_FALSE(tame::error_code{tame::errc::closed} == boost::system::errc::timed_out);
}
