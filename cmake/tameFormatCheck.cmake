# cmake -DSOURCE_DIR=<tree> -DCLANG_FORMAT=<clang-format 14> -P tameFormatCheck.cmake
#
# Fails when a C++ file of the tree is not formatted as its .clang-format says
# (clang-format --dry-run -Werror), naming each file and line. The files are
# git's (tracked, plus untracked ones that .gitignore does not ignore), found
# when the check runs, so a file added since the last configure is checked too;
# without git (or outside a repository), every C++ file under SOURCE_DIR outside
# a build tree.
# Fix them with: clang-format -i <file>...
cmake_minimum_required(VERSION 3.25)

if(NOT SOURCE_DIR)
    message(FATAL_ERROR "tameFormatCheck.cmake: pass -DSOURCE_DIR=<the tree>")
endif()
# The tree is formatted with clang-format 14; another version formats some
# constructs differently, so it would report files that are fine.
set(version "")
if(CLANG_FORMAT)
    execute_process(COMMAND "${CLANG_FORMAT}" --version
        OUTPUT_VARIABLE version OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
if(NOT version MATCHES "clang-format version 14\\.")
    message(FATAL_ERROR "clang-format 14 not found (CLANG_FORMAT=${CLANG_FORMAT}: ${version}); "
        "cmake/install-deps.sh installs it, or configure with -DTAME_FORMAT_CHECK=OFF")
endif()

set(patterns *.cpp *.hpp *.h *.ipp *.cc *.cxx *.hxx)

set(files "")
set(git_result 1)
find_program(GIT git)
if(GIT AND EXISTS "${SOURCE_DIR}/.git")
    execute_process(
        COMMAND "${GIT}" ls-files --cached --others --exclude-standard -- ${patterns}
        WORKING_DIRECTORY "${SOURCE_DIR}"
        OUTPUT_VARIABLE listed
        RESULT_VARIABLE git_result
        ERROR_QUIET)
endif()
if(git_result EQUAL 0)
    string(REPLACE "\n" ";" listed "${listed}")
    foreach(file IN LISTS listed)
        # A file deleted but not yet committed is still listed.
        if(file AND EXISTS "${SOURCE_DIR}/${file}")
            list(APPEND files "${file}")
        endif()
    endforeach()
else()
    set(globs "")
    foreach(pattern IN LISTS patterns)
        list(APPEND globs "${SOURCE_DIR}/${pattern}")
    endforeach()
    file(GLOB_RECURSE found RELATIVE "${SOURCE_DIR}" ${globs})
    # Build trees (a CMakeCache.txt marks each) hold generated sources.
    file(GLOB_RECURSE caches RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/*/CMakeCache.txt")
    foreach(file IN LISTS found)
        if(file MATCHES "(^|/)\\.")
            continue()
        endif()
        set(in_build_tree FALSE)
        foreach(cache IN LISTS caches)
            get_filename_component(build_dir "${cache}" DIRECTORY)
            string(FIND "${file}" "${build_dir}/" at)
            if(at EQUAL 0)
                set(in_build_tree TRUE)
                break()
            endif()
        endforeach()
        if(NOT in_build_tree)
            list(APPEND files "${file}")
        endif()
    endforeach()
endif()

list(LENGTH files count)
if(count EQUAL 0)
    message(FATAL_ERROR "found no C++ file under ${SOURCE_DIR}")
endif()

execute_process(
    COMMAND "${CLANG_FORMAT}" --dry-run -Werror --style=file ${files}
    WORKING_DIRECTORY "${SOURCE_DIR}"
    RESULT_VARIABLE result
    ERROR_VARIABLE diagnostics)
if(NOT result EQUAL 0)
    # One line per misformatted file, then clang-format's own diagnostics.
    string(REGEX MATCHALL "[^\n]*: error: code should be clang-formatted" hits "${diagnostics}")
    set(bad "")
    foreach(hit IN LISTS hits)
        string(REGEX REPLACE ":[0-9]+:[0-9]+: error: code should be clang-formatted$" "" path
            "${hit}")
        list(APPEND bad "${path}")
    endforeach()
    list(REMOVE_DUPLICATES bad)
    list(JOIN bad "\n  " bad_lines)
    message("${diagnostics}")
    message(FATAL_ERROR
        "Not formatted as .clang-format says (${CLANG_FORMAT}):\n  ${bad_lines}\n"
        "Fix with: clang-format -i <file>...")
endif()
message(STATUS "${count} C++ files formatted as .clang-format says")
