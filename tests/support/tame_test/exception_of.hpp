#pragma once

#include <tame/error.hpp>

#include <boost/system/system_error.hpp>

#include <exception>
#include <string>

namespace tame_test {

/// The error_code of the boost::system::system_error in `e`; none when `e` is
/// null or holds another exception.
inline tame::error_code code_of(const std::exception_ptr& e)
{
    try {
        if (e) {
            std::rethrow_exception(e);
        }
    } catch (const boost::system::system_error& error) {
        return error.code();
    } catch (...) {
    }
    return {};
}

/// The what() of the std::exception in `e`; empty when `e` is null or holds
/// something else.
inline std::string message_of(const std::exception_ptr& e)
{
    try {
        if (e) {
            std::rethrow_exception(e);
        }
    } catch (const std::exception& error) {
        return error.what();
    } catch (...) {
    }
    return {};
}

} // namespace tame_test
