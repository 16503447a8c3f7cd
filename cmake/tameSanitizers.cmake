# TAME_SANITIZE: a comma-separated -fsanitize= list (e.g. "address,undefined" or
# "thread") applied to tame's own targets by tame_set_sanitizers(). The asan and
# tsan presets set it. Everything in a test binary that runs our code is built by
# us, so TSan sees every synchronisation.
set(TAME_SANITIZE "" CACHE STRING "Sanitizers for tame's targets, as for -fsanitize=")

function(tame_set_sanitizers target)
    if(TAME_SANITIZE)
        target_compile_options(${target} PRIVATE
            -fsanitize=${TAME_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
        target_link_options(${target} PRIVATE -fsanitize=${TAME_SANITIZE})
        # g++ warns at every std::atomic_thread_fence in Asio's headers that TSan
        # does not model fences; the warning says nothing about our code.
        if(TAME_SANITIZE MATCHES "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
            target_compile_options(${target} PRIVATE -Wno-tsan)
        endif()
        # clang 14's -fsanitize=function (part of "undefined") stores, before each
        # function, its distance to the function's type; with coverage (the fuzz
        # preset) a coroutine's split parts land in other sections, and the
        # assembler fails: "Cannot represent a difference across sections".
        if(TAME_SANITIZE MATCHES "undefined" AND CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
            target_compile_options(${target} PRIVATE -fno-sanitize=function)
        endif()
    endif()
endfunction()

# tame_target_defaults(<target>): warnings and sanitizers, as every tame target gets.
function(tame_target_defaults target)
    tame_set_warnings(${target})
    tame_set_sanitizers(${target})
endfunction()
