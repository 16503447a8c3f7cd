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
    endif()
endfunction()

# tame_target_defaults(<target>): warnings and sanitizers, as every tame target gets.
function(tame_target_defaults target)
    tame_set_warnings(${target})
    tame_set_sanitizers(${target})
endfunction()
