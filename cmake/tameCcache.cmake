# Compiles through ccache when it is installed (cmake/install-deps.sh installs
# it), so that a second build of the same sources, in this tree or in a fresh
# clone elsewhere, takes its objects from the cache.
#
# A launcher the user chose wins: -DCMAKE_CXX_COMPILER_LAUNCHER=... (empty
# turns ccache off), the CMAKE_CXX_COMPILER_LAUNCHER environment variable, or
# -DTAME_CCACHE=OFF.
#
# ccache keys an object on its command line and its inputs. Two settings, given
# to ccache alone through `cmake -E env`, keep the checkout's folder out of it:
# - CCACHE_BASEDIR: the folder that holds both the sources and the build tree.
#   ccache rewrites the paths under it relative to the build directory, so
#   /a/tame/lib/src/x.cpp and /b/tame/lib/src/x.cpp both become ../../lib/src/x.cpp.
# - CCACHE_NOHASHDIR: with -g, ccache would also key on the working directory
#   (it goes into the debug information). The cost: an object taken from the
#   cache names in its debug information the build directory that compiled it
#   first, so a debugger may look for sources there.
# Everything else (the cache's folder, its size, CCACHE_DIR and the rest of the
# environment, the user's ccache.conf) is ccache's own configuration, untouched.
option(TAME_CCACHE "Compile through ccache when it is installed" ON)

if(TAME_CCACHE AND NOT DEFINED CACHE{CMAKE_CXX_COMPILER_LAUNCHER})
    find_program(TAME_CCACHE_PROGRAM ccache)
    mark_as_advanced(TAME_CCACHE_PROGRAM)
    if(TAME_CCACHE_PROGRAM)
        # The deepest folder that holds both trees; ccache refuses "/" (it
        # would rewrite the system headers' paths too), so then the sources'.
        file(REAL_PATH "${CMAKE_SOURCE_DIR}" source_dir)
        file(REAL_PATH "${CMAKE_BINARY_DIR}" binary_dir)
        set(base_dir "${source_dir}")
        while(NOT base_dir STREQUAL "/")
            string(FIND "${binary_dir}/" "${base_dir}/" at)
            if(at EQUAL 0)
                break()
            endif()
            get_filename_component(base_dir "${base_dir}" DIRECTORY)
        endwhile()
        if(base_dir STREQUAL "/")
            set(base_dir "${source_dir}")
        endif()
        set(CMAKE_CXX_COMPILER_LAUNCHER
            "${CMAKE_COMMAND}" -E env "CCACHE_BASEDIR=${base_dir}" CCACHE_NOHASHDIR=true
            "${TAME_CCACHE_PROGRAM}")
        message(STATUS "tame: compiling through ${TAME_CCACHE_PROGRAM} (base dir ${base_dir})")
    endif()
endif()
