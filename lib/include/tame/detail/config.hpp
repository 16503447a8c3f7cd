#pragma once

/// Common declarations shared by every tame header.

namespace boost::asio {
}

namespace tame {

/// Short name for Boost.Asio inside tame, as Beast uses `net`.
namespace asio = boost::asio;

} // namespace tame
