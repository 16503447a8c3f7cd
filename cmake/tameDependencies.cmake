# Finds what tame's libraries need. Install them with cmake/install-deps.sh.
find_package(Threads REQUIRED)
find_package(Boost 1.81 REQUIRED CONFIG COMPONENTS json url)
# hiredis (Debian's libhiredis-dev, 0.14): tame::redis uses its RESP reader and
# command formatter.
find_package(PkgConfig REQUIRED)
pkg_check_modules(hiredis REQUIRED IMPORTED_TARGET GLOBAL hiredis)
