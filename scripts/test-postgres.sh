#!/usr/bin/env bash
# A private PostgreSQL server for the tests, for machines where none accepts them at
# CUSTODIAN_TEST_POSTGRES (scripts/test.sh starts and stops it):
#   scripts/test-postgres.sh start DIR   starts a server keeping everything in DIR (a new, empty
#                                        directory such as `mktemp -d` makes) on a free port of
#                                        127.0.0.1, and prints its URL
#   scripts/test-postgres.sh stop DIR    stops the server started in DIR
# It installs Debian's postgresql package when it is missing (as root). The server trusts local
# connections: it is the tests' throwaway server, never one to keep data in.
set -euo pipefail
if [ $# -ne 2 ] || { [ "$1" != start ] && [ "$1" != stop ]; }; then
    echo "usage: $0 start|stop DIR" >&2
    exit 2
fi
DIR=$2

bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}
BIN=$(bindir || true)
# initdb and postgres refuse to run as root: as root, run them as the `postgres` account.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ "$1" = stop ]; then
    if [ -n "$BIN" ] && [ -f "$DIR/data/postmaster.pid" ]; then
        as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
    fi
    exit 0
fi

if [ -z "$BIN" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "the PostgreSQL tests need a server: install Debian's postgresql package (apt-get install postgresql) and rerun, or set CUSTODIAN_TEST_POSTGRES to a server that accepts them" >&2
        exit 2
    fi
    echo "installing Debian's postgresql package for the PostgreSQL tests" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    BIN=$(bindir)
fi
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$DIR"
fi
as_owner "$BIN/initdb" -D "$DIR/data" -A trust -U postgres --no-sync >/dev/null
# A port nothing listens on, below Linux's ephemeral range (32768 and up) so that no outgoing
# connection holds it; taken between the check and the start, another one is tried.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 12000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
    rm -f "$DIR/server.log"
    if as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -o \
        "-p $port -k '$DIR' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
        start >"$DIR/pg_ctl.out" 2>&1; then
        "$BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres test
        echo "postgres://postgres@127.0.0.1:$port/test"
        exit 0
    fi
    grep -q "Address already in use" "$DIR/server.log" 2>/dev/null || break
done
echo "could not start PostgreSQL in $DIR:" >&2
cat "$DIR/pg_ctl.out" >&2
tail -n 20 "$DIR/server.log" >&2 2>/dev/null || true
exit 2
