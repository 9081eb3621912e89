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
# Azure tests run against Azurite, Microsoft's storage emulator, from the npm registry.
export AZURITE_HOME="${AZURITE_HOME:-$HOME/.cache/custodian-azurite}"
if [ ! -x "$AZURITE_HOME/node_modules/.bin/azurite-blob" ]; then
    command -v npm >/dev/null || { echo "the Azure tests need npm (Node.js) to install Azurite" >&2; exit 2; }
    npm install --silent --no-audit --no-fund --prefix "$AZURITE_HOME" azurite@3 >/dev/null
fi
# Notification tests send mail to aiosmtpd (PyPI), an SMTP server started on loopback.
export CUSTODIAN_SMTPD_HOME="${CUSTODIAN_SMTPD_HOME:-$HOME/.cache/custodian-smtpd}"
export CUSTODIAN_SMTPD_PYTHON="$CUSTODIAN_SMTPD_HOME/bin/python"
if ! "$CUSTODIAN_SMTPD_PYTHON" -c 'import aiosmtpd' 2>/dev/null; then
    command -v python3 >/dev/null || { echo "the notification tests need python3 to install aiosmtpd" >&2; exit 2; }
    python3 -m venv "$CUSTODIAN_SMTPD_HOME"
    "$CUSTODIAN_SMTPD_PYTHON" -m pip install --quiet --disable-pip-version-check 'aiosmtpd==1.4.6'
fi
# Catalog tests use PostgreSQL at CUSTODIAN_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test),
# each in a schema of its own. When that variable is unset and no server answers at the default
# address, the tests get a private server of their own (scripts/test-postgres.sh), stopped at the end.
if [ -z "${CUSTODIAN_TEST_POSTGRES:-}" ] && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    CUSTODIAN_TEST_POSTGRES=$(bash scripts/test-postgres.sh)
    export CUSTODIAN_TEST_POSTGRES
    trap 'bash scripts/test-postgres.sh stop' EXIT
fi
cargo test --all-features "$@"
