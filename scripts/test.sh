#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test.
# Media tests compare our audio with sox's and make video with ffmpeg (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v sox >/dev/null || need+=(sox)
dpkg -s libsox-fmt-all >/dev/null 2>&1 || need+=(libsox-fmt-all)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
if ((${#need[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "the tests need: ${need[*]}; install them (apt-get install ${need[*]}) and rerun" >&2
        exit 2
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
exec cargo test --all-features "$@"
