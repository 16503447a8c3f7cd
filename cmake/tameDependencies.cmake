# Finds what tame's libraries need. Install them with cmake/install-deps.sh.
find_package(Threads REQUIRED)
find_package(Boost 1.81 REQUIRED CONFIG COMPONENTS json url)
