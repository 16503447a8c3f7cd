#pragma once

// Reads the body of a message whose header a Beast parser has already taken,
// for the server's requests and the client's responses.
//
// Not http::async_read, because of a bug in Beast 1.81's chunked parser: once
// put() has answered need_more at the final chunk ("0\r\n" and an incomplete
// trailer), a later put() with fewer than five bytes fails an assertion
// (basic_parser.ipp, parse_chunk_header: n >= 5) and aborts any build with
// assertions on. http::async_read makes that call: it first puts the bytes it
// was handed, which the parser has just declined, again; and a client's one
// byte after "0\r\n" does it too. The fuzzer found it. (Fixed upstream after
// 1.81, boostorg/beast#2861.) Here the parser sees a chunked body's buffer
// again only after a read, and only once it holds five bytes, the shortest
// final chunk ("0\r\n\r\n"), which any valid rest of a chunked body reaches.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>

#include <cstddef>

namespace tame::http::detail {

/// Puts what `buffer` holds into `parser`, consuming what it takes, until the
/// message is done or the parser needs more. need_more is not an error here.
template <class Parser>
boost::system::error_code put_buffered(Parser& parser, boost::beast::flat_buffer& buffer)
{
    while (buffer.size() > 0 && !parser.is_done()) {
        boost::system::error_code ec;
        const auto used = parser.put(buffer.data(), ec);
        buffer.consume(used);
        if (ec == boost::beast::http::error::need_more) {
            return {};
        }
        if (ec || used == 0) {
            return ec;
        }
    }
    return {};
}

/// Reads from `stream` into `buffer` and parses until `parser` is done.
/// `buffer` holds what put_buffered() left: bytes the parser has declined,
/// which are put again only after a read has added to them. A
/// chunk line or trailer left unparsed beyond `max_unparsed` bytes is
/// http::error::bad_chunk (the chunked body's own bytes are consumed as they
/// come, so only a line that never ends grows the buffer). An end of stream
/// before the end of the message is what the parser's put_eof() says of it.
template <class Stream, class Parser>
boost::asio::awaitable<boost::system::error_code>
read_body(Stream& stream, boost::beast::flat_buffer& buffer, Parser& parser,
          std::size_t max_unparsed, std::size_t read_size = 8 * 1024)
{
    constexpr std::size_t shortest_final_chunk = 5;
    constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
    while (!parser.is_done()) {
        do {
            if (buffer.size() > max_unparsed) {
                co_return boost::beast::http::error::bad_chunk;
            }
            auto [ec, n] = co_await stream.async_read_some(buffer.prepare(read_size), use_tuple);
            if (ec == boost::asio::error::eof) {
                boost::system::error_code eof_ec;
                parser.put_eof(eof_ec);
                if (!eof_ec && !parser.is_done()) {
                    eof_ec = boost::beast::http::error::partial_message;
                }
                co_return eof_ec;
            }
            if (ec) {
                co_return ec;
            }
            buffer.commit(n);
        } while (parser.chunked() && buffer.size() < shortest_final_chunk);
        if (auto ec = put_buffered(parser, buffer)) {
            co_return ec;
        }
    }
    co_return boost::system::error_code{};
}

} // namespace tame::http::detail
