#include <tame/http/json.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace tame::http {

response json_response(http::status code, const boost::json::value& body)
{
    response res{code, 11};
    // 1xx, 204 and 304 answers carry no body (Beast refuses to frame one).
    const auto value = static_cast<unsigned>(code);
    if (value >= 200 && code != http::status::no_content && code != http::status::not_modified) {
        res.set(field::content_type, "application/json");
        res.body() = boost::json::serialize(body);
    }
    res.prepare_payload();
    return res;
}

response json_response(const boost::json::value& body)
{
    return json_response(http::status::ok, body);
}

response error_response(http::status code, std::string_view message)
{
    return json_response(code, boost::json::object{{"error", message}});
}

boost::json::value parse_json(const request& req)
{
    if (req.body().empty()) {
        throw http_error{http::status::bad_request, "request body is empty; expected JSON"};
    }
    boost::system::error_code ec;
    auto value = boost::json::parse(req.body(), ec);
    if (ec) {
        throw http_error{http::status::bad_request,
                         "request body is not valid JSON: " + ec.message()};
    }
    return value;
}

boost::json::object parse_json_object(const request& req)
{
    auto value = parse_json(req);
    if (!value.is_object()) {
        throw http_error{http::status::bad_request, "request body must be a JSON object"};
    }
    return std::move(value.as_object());
}

} // namespace tame::http
