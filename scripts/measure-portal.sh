#!/usr/bin/env bash
# Figures of `custodian serve --listen` (the web portal, the JSON API and /metrics) on a SQLite
# catalog of RUNS job runs and CONVERSATIONS conversations (built by examples/portal_scale.rs,
# once: a second measurement in the same WORK_DIR reuses it):
#   idle: serve without a listener, then with one, each idle for IDLE_SECONDS: CPU-seconds
#     used, resident memory (VmRSS, and VmHWM, its peak), threads.
#   load: `wrk -t2 -cCONNECTIONS -dDURATION --latency` on each page, authenticated by an API
#     token of an account granted JOBS_READ and CONVERSATIONS_READ: requests/s, p50, p99, and
#     the CPU-seconds serve used over the run (utime + stime from /proc/PID/stat), with the
#     load average before it (wrk and serve share the machine's cores). A request waits up to
#     30 s (wrk's default of 2 s would leave the slowest out of the percentiles).
#
#   scripts/measure-portal.sh WORK_DIR    env: SECTIONS="idle load" RUNS=1000000
#     CONVERSATIONS=1000000 CONNECTIONS=50 DURATION=20s IDLE_SECONDS=60
# Needs wrk, curl and a release build (cargo build --release --bin custodian --example
# portal_scale; CARGO_TARGET_DIR is honoured).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: scripts/measure-portal.sh WORK_DIR}
SECTIONS=${SECTIONS:-idle load}
RUNS=${RUNS:-1000000}
CONVERSATIONS=${CONVERSATIONS:-1000000}
CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-20s}
IDLE_SECONDS=${IDLE_SECONDS:-60}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
for tool in wrk curl; do
  command -v $tool >/dev/null || { echo "measure-portal.sh needs $tool (apt-get install $tool)" >&2; exit 2; }
done
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")
BIN=$TARGET/release/custodian
SCALE=$TARGET/release/examples/portal_scale
for b in "$BIN" "$SCALE"; do
  [ -x "$b" ] || { echo "$b is missing: cargo build --release --bin custodian --example portal_scale" >&2; exit 2; }
done
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
export TZ=UTC
HZ=$(getconf CLK_TCK)

"$SCALE" "$WORK/catalog.db" --conversations "$CONVERSATIONS" --runs "$RUNS" >&2
mkdir -p "$WORK/repo" "$WORK/archive"
{
  printf '[catalog]\nurl = "sqlite:catalog.db"\n[repository]\nroot = "repo"\n'
  printf '[targets.archive]\nkind = "filesystem"\npath = "archive"\n'
  for p in $(seq 0 9); do printf '[policies.policy-%d]\naction = "export"\ntarget = "archive"\n' "$p"; done
  printf '[lifecycle]\nroles = "roles.toml"\n'
} > "$WORK/custodian.toml"
printf '[users]\nbench = ["JOBS_READ", "CONVERSATIONS_READ"]\n' > "$WORK/roles.toml"
chmod 0644 "$WORK/roles.toml"
cli() { "$BIN" --config "$WORK/custodian.toml" "$@"; }
cli user list | grep -w "^bench" >/dev/null || printf 'a long benchmark passphrase\n' | cli user add bench >&2
TOKEN=$(cli user token bench)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
seconds() { awk -v t="$1" -v hz="$HZ" 'BEGIN {printf "%.2f", t / hz}'; }
load() { awk '{print $1}' /proc/loadavg; }

# Starts serve with the given arguments; sets PID, and URL when it listens.
start_serve() {
  local log=$WORK/serve.log
  : > "$log"
  "$BIN" --config "$WORK/custodian.toml" serve "$@" 2> "$log" &
  PID=$!
  local pattern=serving
  [ $# -gt 0 ] && pattern="web portal listening on "
  until grep -q "$pattern" "$log"; do
    kill -0 $PID 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  URL=$(grep -o 'listening on [^ ]*' "$log" | head -1 | cut -d' ' -f3 || true)
}

stop_serve() { kill -TERM "$PID" && wait "$PID" || true; PID=; }
trap '[ -z "${PID:-}" ] || kill -TERM "$PID" 2>/dev/null' EXIT

if want idle; then
  echo "| serve, idle for ${IDLE_SECONDS} s | CPU-seconds | VmRSS | VmHWM | threads |"
  echo "|---|---|---|---|---|"
  for listen in no yes; do
    if [ $listen = yes ]; then start_serve --listen 127.0.0.1:0; else start_serve; fi
    sleep 2
    t0=$(ticks $PID)
    sleep "$IDLE_SECONDS"
    t1=$(ticks $PID)
    echo "| listener: $listen | $(seconds $((t1 - t0))) | $(( $(status $PID VmRSS) / 1024 )) MB | $(( $(status $PID VmHWM) / 1024 )) MB | $(status $PID Threads) |"
    stop_serve
  done
  echo
fi

# One wrk run on a path: its row of the table.
measure() {
  local name=$1 path=$2 code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$URL$path")
  [ "$code" = 200 ] || { echo "$path answered $code, not 200" >&2; stop_serve; exit 1; }
  local before t0 t1
  before=$(load)
  t0=$(ticks $PID)
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --timeout 30s --latency -H "Authorization: Bearer $TOKEN" "$URL$path" > "$WORK/wrk.out"
  t1=$(ticks $PID)
  if grep -q 'Non-2xx' "$WORK/wrk.out"; then cat "$WORK/wrk.out" >&2; stop_serve; exit 1; fi
  awk -v name="$name" -v cpu="$(seconds $((t1 - t0)))" -v ld="$before" '
    $1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 }
    $1 == "Requests/sec:" { rps = $2 } /requests in/ { n = $1 }
    /Socket errors/ { errors = $0; sub(/.*Socket errors: /, "", errors) }
    END { printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", name, p50, p99, rps, n, errors ? errors : "none", cpu, ld }
  ' "$WORK/wrk.out"
}

if want load; then
  start_serve --listen 127.0.0.1:0
  run=$(( RUNS / 2 / 60 * 60 + 3 ))      # a failed run (portal_scale.rs: policy 0, third outcome)
  echo "| request ($CONNECTIONS clients, $DURATION) | p50 | p99 | requests/s | requests | socket errors | serve CPU-s | load before |"
  echo "|---|---|---|---|---|---|---|---|"
  measure '`/runs` (HTML, first page)' /runs
  measure '`/api/v1/runs?limit=50`' '/api/v1/runs?limit=50'
  measure "\`/runs/$run\` (HTML, a failed run)" "/runs/$run"
  measure "\`/api/v1/runs/$run\`" "/api/v1/runs/$run"
  measure '`/conversations?user=u7` (HTML)' '/conversations?user=u7'
  measure '`/api/v1/conversations?user=u7&limit=50`' '/api/v1/conversations?user=u7&limit=50'
  measure '`/api/v1/conversations?limit=50`' '/api/v1/conversations?limit=50'
  measure '`/metrics`' /metrics
  stop_serve
fi
