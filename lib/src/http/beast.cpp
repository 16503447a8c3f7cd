// Beast's compiled part, once for every user of tame::http
// (BOOST_BEAST_SEPARATE_COMPILATION); Asio's is tame::asio's.
#include <boost/beast/src.hpp>
