#pragma once

#include <tame/detail/config.hpp>

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>

/// The message types of tame::http: Beast's, with the body held in a string.
namespace tame::http {

/// An HTTP request as the server hands it to a handler, and as the client sends it.
using request = boost::beast::http::request<boost::beast::http::string_body>;

/// An HTTP response as a handler returns it, and as the client receives it.
using response = boost::beast::http::response<boost::beast::http::string_body>;

/// Beast's request methods (`verb::get`, `verb::post`, …).
using verb = boost::beast::http::verb;

/// Beast's status codes (`status::ok`, `status::not_found`, …).
using status = boost::beast::http::status;

/// Beast's well-known header fields (`field::content_type`, …).
using field = boost::beast::http::field;

} // namespace tame::http
