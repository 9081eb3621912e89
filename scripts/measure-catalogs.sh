#!/usr/bin/env bash
# The two catalogs side by side on this machine: CONVERSATIONS small conversations
# (examples/synth.rs --seconds 0) indexed into a fresh SQLite file and into a fresh PostgreSQL
# schema, the rerun with nothing changed, and an incremental confidential-flag policy setting the
# flag on all of them. Each figure is the median of RUNS, each run from a fresh catalog; peak RSS
# of the custodian process.
#
#   scripts/measure-catalogs.sh WORK_DIR   env: CONVERSATIONS=200000 RUNS=3
#     PG=postgres://postgres@127.0.0.1:5432/test (a schema custodian_catalogs is made and dropped)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: scripts/measure-catalogs.sh WORK_DIR}
CONVERSATIONS=${CONVERSATIONS:-200000}
RUNS=${RUNS:-3}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
SCHEMA=custodian_catalogs
command -v /usr/bin/time >/dev/null || { echo "measure-catalogs.sh needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --quiet --bin custodian --example synth
BIN=$CARGO_TARGET_DIR/release/custodian
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
REPO=$WORK/repo-$CONVERSATIONS
[ -d "$REPO" ] || "$CARGO_TARGET_DIR/release/examples/synth" "$REPO" --conversations "$CONVERSATIONS" --seconds 0 --rate 8000 > /dev/null
trap 'psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" 2>/dev/null' EXIT

config() { # URL → a config with that catalog and one confidential policy over everything
  cat <<TOML
[catalog]
url = "$1"
[repository]
root = "$REPO"
[policies.flag-all]
action = "confidential"
flag = "set"
mode = "incremental"
TOML
}
config "sqlite:$WORK/catalog.db" > "$WORK/sqlite.toml"
config "$PG?options=-c%20search_path%3D$SCHEMA" > "$WORK/postgres.toml"

fresh() {
  rm -f "$WORK"/catalog.db*
  psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" 2>/dev/null
}

# Runs `custodian ARGS…` with CONFIG; prints "seconds peak_kb".
timed() {
  local config=$1
  shift
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$BIN" --config "$config" "$@" > /dev/null 2>&1
  cat "$WORK/time.txt"
}

median() { sort -n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'; }

declare -A result
for catalog in sqlite postgres; do
  : > "$WORK/$catalog-index" ; : > "$WORK/$catalog-rerun" ; : > "$WORK/$catalog-flag"
  for _ in $(seq 1 "$RUNS"); do
    fresh
    timed "$WORK/$catalog.toml" index >> "$WORK/$catalog-index"
    timed "$WORK/$catalog.toml" index >> "$WORK/$catalog-rerun"
    timed "$WORK/$catalog.toml" run flag-all --no-index >> "$WORK/$catalog-flag"
  done
  for figure in index rerun flag; do
    result[$catalog-$figure]=$(median < "$WORK/$catalog-$figure" | awk '{ printf "%.1f s, %d MB peak", $1, $2 / 1024 }')
  done
done
echo "| figure ($CONVERSATIONS conversations, median of $RUNS) | SQLite | PostgreSQL |"
echo "|---|---|---|"
echo "| index, fresh catalog | ${result[sqlite-index]} | ${result[postgres-index]} |"
echo "| index rerun, nothing changed | ${result[sqlite-rerun]} | ${result[postgres-rerun]} |"
echo "| confidential flag set on all (incremental) | ${result[sqlite-flag]} | ${result[postgres-flag]} |"
