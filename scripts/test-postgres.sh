#!/usr/bin/env bash
# Starts a private PostgreSQL server for the tests, for machines where none answers at the
# default address, and prints its URL on stdout. `scripts/test-postgres.sh stop` stops it.
#   env: CUSTODIAN_PG_DIR (default ${TMPDIR:-/tmp}/custodian-postgres-$UID), CUSTODIAN_PG_PORT (55432)
# The server listens on 127.0.0.1 only, trusts local connections and keeps its data in that
# directory; it is the tests' throwaway server, never one to keep data in.
set -euo pipefail
DIR=${CUSTODIAN_PG_DIR:-${TMPDIR:-/tmp}/custodian-postgres-$(id -u)}
PORT=${CUSTODIAN_PG_PORT:-55432}
URL="postgres://postgres@127.0.0.1:$PORT/test"

bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}
BIN=$(bindir || true)
if [ -z "$BIN" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "the PostgreSQL tests need a server: install postgresql (apt-get install postgresql) or set CUSTODIAN_TEST_POSTGRES" >&2
        exit 2
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    BIN=$(bindir)
fi
# initdb and postgres refuse to run as root: as root, run them as the `postgres` account.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ "${1:-}" = stop ]; then
    [ -f "$DIR/data/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
    exit 0
fi

if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
    mkdir -p "$DIR"
    [ "$(id -u)" -eq 0 ] && chown postgres "$DIR" 2>/dev/null || true
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
        as_owner "$BIN/initdb" -D "$DIR/data" -A trust -U postgres --no-sync >/dev/null
    fi
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
        -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null ||
        { echo "could not start PostgreSQL in $DIR (see $DIR/server.log)" >&2; exit 2; }
fi
"$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 ||
    "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres test
echo "$URL"
