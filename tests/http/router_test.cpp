#include <tame/http/router.hpp>

#include <catch2/catch.hpp>

namespace asio = boost::asio;
namespace http = tame::http;
using outcome = http::route_match::outcome;

namespace {

http::handler nothing()
{
    return [](http::request_context&) -> asio::awaitable<http::response> {
        co_return http::response{};
    };
}

} // namespace

TEST_CASE("a literal route matches its exact path only", "[http][router]")
{
    http::router routes;
    routes.get("/sync-data", nothing());

    CHECK(routes.match(http::verb::get, "/sync-data").result == outcome::found);
    CHECK(routes.match(http::verb::get, "/sync-data/").result == outcome::not_found);
    CHECK(routes.match(http::verb::get, "/sync").result == outcome::not_found);
    CHECK(routes.match(http::verb::get, "/").result == outcome::not_found);
}

TEST_CASE("a parameter takes one whole non-empty segment, decoded", "[http][router]")
{
    http::router routes;
    routes.get("/jobs/{id}", nothing());

    auto found = routes.match(http::verb::get, "/jobs/a%2Fb%20c");

    REQUIRE(found.result == outcome::found);
    CHECK(found.params == std::vector<std::pair<std::string, std::string>>{{"id", "a/b c"}});
    CHECK(routes.match(http::verb::get, "/jobs/").result == outcome::not_found);
    CHECK(routes.match(http::verb::get, "/jobs/1/2").result == outcome::not_found);
}

TEST_CASE("a literal segment beats a parameter at the first place they differ", "[http][router]")
{
    http::router routes;
    routes.get("/jobs/{id}", nothing())
        .get("/jobs/stats", nothing())
        .get("/{any}/stats", nothing());

    CHECK(routes.match(http::verb::get, "/jobs/stats").index == 1);
    CHECK(routes.match(http::verb::get, "/jobs/7").index == 0);
    CHECK(routes.match(http::verb::get, "/other/stats").index == 2);
}

TEST_CASE("a path known under other methods is method_not_allowed, with Allow", "[http][router]")
{
    http::router routes;
    routes.post("/reports/generate", nothing()).put("/reports/generate", nothing());

    auto m = routes.match(http::verb::get, "/reports/generate");

    CHECK(m.result == outcome::method_not_allowed);
    CHECK(m.allow == "POST, PUT");
}

TEST_CASE("a GET route also answers HEAD, and Allow names both", "[http][router]")
{
    http::router routes;
    routes.get("/healthz", nothing());

    CHECK(routes.match(http::verb::head, "/healthz").result == outcome::found);
    CHECK(routes.match(http::verb::post, "/healthz").allow == "GET, HEAD");
}

TEST_CASE("literals are compared with the decoded path", "[http][router]")
{
    http::router routes;
    routes.get("/a b", nothing());

    CHECK(routes.match(http::verb::get, "/a%20b").result == outcome::found);
}

TEST_CASE("a path with a broken escape matches nothing", "[http][router]")
{
    http::router routes;
    routes.get("/jobs/{id}", nothing());

    CHECK(routes.match(http::verb::get, "/jobs/%zz").result == outcome::not_found);
}

TEST_CASE("bad patterns and duplicate routes are refused", "[http][router]")
{
    http::router routes;
    routes.get("/jobs/{id}", nothing());

    CHECK_THROWS_AS(routes.get("jobs", nothing()), std::invalid_argument);
    CHECK_THROWS_AS(routes.get("/a/{}", nothing()), std::invalid_argument);
    CHECK_THROWS_AS(routes.get("/a/{x}/{x}", nothing()), std::invalid_argument);
    CHECK_THROWS_AS(routes.get("/jobs/{other}", nothing()), std::invalid_argument);
    CHECK_THROWS_AS(routes.get("/empty", http::handler{}), std::invalid_argument);
    CHECK_NOTHROW(routes.post("/jobs/{id}", nothing()));
}

TEST_CASE("routes are labelled by method and pattern", "[http][router]")
{
    http::router routes;
    routes.get("/jobs/{id}", nothing()).post("/sync-data", nothing());

    CHECK(routes.size() == 2);
    CHECK(routes.label(0) == "GET /jobs/{id}");
    CHECK(routes.label(1) == "POST /sync-data");
    CHECK(routes.contains(http::verb::get, "/jobs/{x}"));
    CHECK_FALSE(routes.contains(http::verb::put, "/jobs/{x}"));
}
