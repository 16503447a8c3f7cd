#!/usr/bin/env bash
# Installs the Debian 12 packages tame needs to build, test and benchmark:
# clang and its runtime for the fuzz preset, python3 for the attack scripts,
# clang-format (14) for the format test, ccache to compile each object once,
# hiredis for tame::redis and redis-server for its tests (which start their own).
# Does nothing (and needs no root) when every package is already there.
set -euo pipefail

packages=(
    g++ cmake ninja-build
    libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
    libboost-program-options1.81-dev
    catch2 libbenchmark-dev
    clang libclang-rt-14-dev
    python3
    clang-format ccache
    libhiredis-dev redis-server
)

missing=()
for p in "${packages[@]}"; do
    # dpkg-query prints "install ok installed" only for a fully installed package.
    if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
        missing+=("$p")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

echo "tame: installing missing packages: ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
