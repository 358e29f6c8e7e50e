#!/usr/bin/env bash
# The layer suite on Burn's wgpu backend (tests/gpu). Without a GPU it runs on Mesa's software
# Vulkan device (lavapipe), which this script installs from Debian's packages when it is missing
# (needs root or sudo). Usage: bash scripts/test_wgpu.sh [extra cargo test arguments]
set -eo pipefail
cd "$(dirname "$0")/.."

# (`grep` without -q: it reads all of ldconfig's output, so `pipefail` never sees a SIGPIPE.)
if ! ldconfig -p 2>/dev/null | grep 'libvulkan.so.1' >/dev/null \
    || ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
    echo "== installing the Vulkan loader and Mesa's software Vulkan device (lavapipe)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mesa-vulkan-drivers libvulkan1
fi
# lavapipe wants a runtime folder; without one it prints a harmless "XDG_RUNTIME_DIR is invalid".
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/seqlayers-xdg-$(id -u)"
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
cargo test --locked --features wgpu --test gpu "$@"
