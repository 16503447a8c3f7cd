#include <tame/http/json.hpp>

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

namespace http = tame::http;

namespace {

http::request with_body(std::string body)
{
    http::request req{http::verb::post, "/", 11};
    req.body() = std::move(body);
    return req;
}

std::string reason_for(const std::string& body)
{
    try {
        http::parse_json_object(with_body(body));
    } catch (const http::http_error& e) {
        CHECK(e.status() == http::status::bad_request);
        return e.what();
    }
    return "accepted";
}

} // namespace

TEST_CASE("json_response sets the status, Content-Type and Content-Length", "[http][json]")
{
    auto res = http::json_response(http::status::accepted, boost::json::object{{"job", 7}});

    CHECK(res.result() == http::status::accepted);
    CHECK(res[http::field::content_type] == "application/json");
    CHECK(res[http::field::content_length] == std::to_string(res.body().size()));
    CHECK(boost::json::parse(res.body()) == boost::json::parse(R"({"job":7})"));
}

TEST_CASE("error_response carries the message under \"error\"", "[http][json]")
{
    auto res = http::error_response(http::status::bad_gateway, "upstream \"x\" failed");

    CHECK(res.result() == http::status::bad_gateway);
    CHECK(boost::json::parse(res.body()).at("error") == "upstream \"x\" failed");
}

TEST_CASE("parse_json_object refuses empty, invalid and non-object bodies with 400", "[http][json]")
{
    CHECK(reason_for("") == "request body is empty; expected JSON");
    CHECK(reason_for("{\"a\":").starts_with("request body is not valid JSON: "));
    CHECK(reason_for("[1,2]") == "request body must be a JSON object");
    CHECK(reason_for(R"({"reportIds":[1]})") == "accepted");
}
