#pragma once

#include <tame/detail/config.hpp>

#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

#include <exception>

namespace tame::detail {

/// True if `e` is the operation_aborted a cancelled await throws.
inline bool is_operation_aborted(const std::exception_ptr& e) noexcept
{
    try {
        std::rethrow_exception(e);
    } catch (const boost::system::system_error& error) {
        return error.code() == asio::error::operation_aborted;
    } catch (...) {
        return false;
    }
}

} // namespace tame::detail
