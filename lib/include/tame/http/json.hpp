#pragma once

#include <tame/http/message.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <stdexcept>
#include <string>
#include <string_view>

namespace tame::http {

/// An error a handler throws to answer with `status` and the JSON body
/// `{"error": what()}`, as Gin's `AbortWithStatusJSON` does.
///
/// The server turns any other exception from a handler into a 500 (and logs it).
class http_error : public std::runtime_error {
  public:
    /// An error answered with `code` and `message`.
    http_error(http::status code, const std::string& message)
        : std::runtime_error{message}, status_{code}
    {
    }

    /// The status the server answers with.
    http::status status() const noexcept { return status_; }

  private:
    http::status status_;
};

/// A response carrying `body` serialised as JSON, with `Content-Type:
/// application/json` and its Content-Length set.
response json_response(http::status code, const boost::json::value& body);

/// A 200 response carrying `body` as JSON.
response json_response(const boost::json::value& body);

/// A JSON error response: `{"error": message}` with status `code`.
response error_response(http::status code, std::string_view message);

/// The request body parsed as JSON. Throws http_error (400, with the parser's
/// reason and position) when the body is empty or not valid JSON.
boost::json::value parse_json(const request& req);

/// The request body parsed as a JSON object. Throws http_error (400) when it is
/// not valid JSON, or valid JSON but not an object.
boost::json::object parse_json_object(const request& req);

} // namespace tame::http
