// Asio's compiled part, once for every user of tame::http and tame::redis
// (BOOST_ASIO_SEPARATE_COMPILATION).
#include <boost/asio/impl/src.hpp>
