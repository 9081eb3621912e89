#!/usr/bin/env bash
# Cluster figures on this machine: one full-mode export of CONVERSATIONS synthetic
# conversations (an AUDIO_SECONDS-second 8 kHz WAV each) shared by 1, 2 and 3 `custodian run --node`
# processes over one PostgreSQL catalog, then by 3 with one killed -9 at a third of the run.
# (AUDIO_SECONDS=0, the default, makes each conversation a tiny WAV: the catalog's share shows.)
# The nodes share this machine's cores, so the figures show coordination overhead, not
# scaling: wall time, work units claimed per second, lease renewals, units lost and reclaimed,
# and the time a killed node costs (about its lease).
#
#   scripts/measure-cluster.sh WORK_DIR   env: CONVERSATIONS=20000 AUDIO_SECONDS=0 UNIT=500 LEASE=10s
#     PG=postgres://postgres@127.0.0.1:5432/test (a schema custodian_measure is made and dropped)
#     ARCHIVE=/dev/shm/custodian-measure-archive: the target directory, emptied before each row.
#     On tmpfs by default: on ext4, files created right after `rm -rf` of tens of thousands
#     take ~5x longer (the inode allocator skips recently deleted inodes), which would bury
#     the coordination cost this measures.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: scripts/measure-cluster.sh WORK_DIR}
CONVERSATIONS=${CONVERSATIONS:-20000}
AUDIO_SECONDS=${AUDIO_SECONDS:-0}
UNIT=${UNIT:-500}
LEASE=${LEASE:-10s}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
ARCHIVE=${ARCHIVE:-/dev/shm/custodian-measure-archive}
SCHEMA=custodian_measure
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --quiet --bin custodian --example synth
BIN=$CARGO_TARGET_DIR/release/custodian
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
REPO=$WORK/repo-$CONVERSATIONS-$AUDIO_SECONDS
[ -d "$REPO" ] || "$CARGO_TARGET_DIR/release/examples/synth" "$REPO" --conversations "$CONVERSATIONS" --seconds "$AUDIO_SECONDS" --rate 8000
psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA"
trap 'psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE"; rm -rf "$ARCHIVE"' EXIT
cat > "$WORK/cluster.toml" <<TOML
[catalog]
url = "$PG?options=-c%20search_path%3D$SCHEMA"
[repository]
root = "$REPO"
[targets.archive]
kind = "filesystem"
path = "$ARCHIVE"
[policies.p]
action = "export"
target = "archive"
mode = "full"
TOML
"$BIN" --config "$WORK/cluster.toml" index > /dev/null
# The same policy over a SQLite catalog, for the single-process baseline.
rm -f "$WORK"/catalog.db*
sed -e "s|^url = .*|url = \"sqlite:$WORK/catalog.db\"|" "$WORK/cluster.toml" > "$WORK/single.toml"
"$BIN" --config "$WORK/single.toml" index > /dev/null

# One plain run (no --node) with CONFIG; prints a table row.
baseline() {
  local config=$1 label=$2
  rm -rf "$ARCHIVE"
  sync
  local start=$(date +%s.%N)
  "$BIN" --config "$config" run p --no-index > /dev/null 2>&1
  local end=$(date +%s.%N)
  python3 -c "import sys; w = float(sys.argv[2]) - float(sys.argv[1]); print(f'| {sys.argv[3]} | {w:.2f} s | {int(sys.argv[4]) / w:,.0f} conv/s | – | – | – | – | {int(sys.argv[4]):,} |')" \
    "$start" "$end" "$label" "$CONVERSATIONS"
}

# Runs N nodes (killing the first after KILL_AFTER seconds if set); prints a table row.
measure() {
  local n=$1 label=$2 kill_after=${3:-}
  rm -rf "$ARCHIVE" "$WORK"/node-*.json
  sync
  local start=$(date +%s.%N) pids=()
  for i in $(seq 1 "$n"); do
    "$BIN" --config "$WORK/cluster.toml" --json run p --node "node$i" --unit-size "$UNIT" --lease "$LEASE" > "$WORK/node-$i.json" 2>/dev/null &
    pids+=($!)
  done
  if [ -n "$kill_after" ]; then
    sleep "$kill_after"
    kill -9 "${pids[0]}"
  fi
  for p in "${pids[@]}"; do wait "$p" || true; done
  local end=$(date +%s.%N)
  python3 - "$WORK" "$n" "$label" "$start" "$end" <<'PY'
import glob, json, sys
work, n, label, start, end = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
reports = []
for f in sorted(glob.glob(f"{work}/node-*.json")):
    try:
        reports.append(json.load(open(f)))
    except ValueError:
        pass  # the killed node printed nothing
wall = end - start
units = sum(r["units"] for r in reports)
finished = [r["finished"] for r in reports if r.get("finished")]
exported = finished[0]["counters"]["exported"] if finished else 0
print(f"| {label} | {wall:.2f} s | {exported / wall:,.0f} conv/s | {units} ({units / wall:.1f}/s) | "
      f"{sum(r['renewals'] for r in reports)} | {sum(r['lost'] for r in reports)} | "
      f"{sum(r['reclaimed'] for r in reports)} | {exported:,} |")
PY
}

echo "| nodes ($CONVERSATIONS conversations, units of $UNIT, lease $LEASE) | wall | export rate | units claimed | lease renewals | units lost | units reclaimed | exported |"
echo "|---|---|---|---|---|---|---|---|"
baseline "$WORK/single.toml" "plain run, SQLite catalog"
baseline "$WORK/cluster.toml" "plain run, PostgreSQL catalog"
measure 1 "1 node"
measure 2 "2 nodes"
row=$(measure 3 "3 nodes")
echo "$row"
third=$(echo "$row" | awk -F'|' '{gsub(/ s/, "", $3); printf "%.1f", $3 / 3}')
measure 3 "3 nodes, one killed -9 after ${third} s" "$third"
