#!/usr/bin/env bash
# `custodian index` of a repository in a bucket against `rclone lsf -R` of the same prefix
# (the listing floor), side by side on one loopback S3 server (s3s-fs with the listings of
# tests/support/listed_fs.rs, `examples/s3_server.rs --listed`). CONVERSATIONS conversations
# (a small conversation.json and a 4-byte artifact each, examples/store_scale.rs) are
# generated once into the bucket directory. Rows: rclone lsf -R (a listing per directory,
# --checkers 8), rclone lsf -R --fast-list (one recursive listing), rclone copy of every
# conversation.json to a directory (the listing plus a read of every record, 16 at once: the
# floor of a first index), then custodian (release, --no-default-features --features s3)
# through each S3 client: a first index into an empty catalog (every record read) and a second one
# (nothing changed: listings only). Wall time, CPU-seconds of the client (user+sys), and the
# server's CPU-seconds during the run, each the median of RUNS runs. Prints a markdown table.
#
#   scripts/compare-store-index.sh WORK_DIR     env: CONVERSATIONS=200000 RUNS=3 PORT=9565
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: scripts/compare-store-index.sh WORK_DIR}
CONVERSATIONS=${CONVERSATIONS:-200000}
RUNS=${RUNS:-3}
PORT=${PORT:-9565}
for tool in rclone /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "compare-store-index.sh needs $tool (apt-get install rclone time)" >&2; exit 2; }
done
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --quiet --no-default-features --features s3 --bin custodian --example store_scale --example s3_server
BIN=$CARGO_TARGET_DIR/release/custodian
SCALE=$CARGO_TARGET_DIR/release/examples/store_scale
mkdir -p "$WORK/store/bench"
WORK=$(realpath "$WORK")
"$SCALE" "$WORK/store/bench/repo-$CONVERSATIONS" --conversations "$CONVERSATIONS"

unset AWS_CA_BUNDLE
export AWS_ACCESS_KEY_ID=compare AWS_SECRET_ACCESS_KEY=compare-secret-key
"$CARGO_TARGET_DIR/release/examples/s3_server" "$WORK/store" "$PORT" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" --listed 2>/dev/null &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
until (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; do sleep 0.1; done

export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other RCLONE_CONFIG_BENCH_LIST_VERSION=2
export RCLONE_CONFIG_BENCH_ENDPOINT=http://127.0.0.1:$PORT RCLONE_CONFIG_BENCH_REGION=us-east-1
export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true

# CPU-seconds the server has used so far.
server_cpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$SERVER/stat"; }

# Runs "$@" once; prints "wall client_cpu server_cpu".
measure() {
  local before after
  before=$(server_cpu)
  /usr/bin/time -f "%e %U %S" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || {
    cat "$WORK/err" >&2; return 1; }
  after=$(server_cpu)
  awk -v b="$before" -v a="$after" '{ printf "%.2f %.2f %.2f\n", $1, $2 + $3, a - b }' "$WORK/time"
}

# Median (by wall time) of RUNS lines of "wall cpu server".
median() { sort -n | awk -v n="$RUNS" 'NR == int((n + 1) / 2)'; }

row() {
  local name=$1 line
  read -r wall cpu srv <<<"$2"
  printf '| %s | %s | %s | %s |\n' "$name" "$wall" "$cpu" "$srv"
}

echo "| $CONVERSATIONS conversations in a bucket on loopback | wall s | client CPU s | server CPU s |"
echo "|---|---:|---:|---:|"
for fast in "" "--fast-list"; do
  lines=$(for _ in $(seq "$RUNS"); do measure rclone lsf -R $fast "bench:bench/repo-$CONVERSATIONS"; done | median)
  listed=$(wc -l <"$WORK/out")
  row "rclone lsf -R $fast ($listed entries)" "$lines"
done

# The floor of a first index: the listing plus a read of every record, 16 at once.
lines=$(for _ in $(seq "$RUNS"); do
  rm -rf "$WORK/records"
  measure rclone copy --fast-list --transfers 16 --include conversation.json "bench:bench/repo-$CONVERSATIONS" "$WORK/records"
done | median)
row "rclone copy --fast-list --transfers 16 --include conversation.json (the listing and every record read)" "$lines"
rm -rf "$WORK/records"

for client in aws_sdk object_store; do
  cat > "$WORK/$client.toml" <<TOML
[catalog]
url = "sqlite:state-$client/catalog.db"
[repository]
kind = "s3"
bucket = "bench"
prefix = "repo-$CONVERSATIONS/"
region = "us-east-1"
endpoint = "http://127.0.0.1:$PORT"
path_style = true
client = "$client"
[targets.none]
kind = "filesystem"
path = "archive"
TOML
  first=""
  second=""
  for _ in $(seq "$RUNS"); do
    rm -rf "$WORK/state-$client"
    mkdir -p "$WORK/state-$client"
    first+=$(measure "$BIN" --config "$WORK/$client.toml" index)$'\n'
    grep -q "$CONVERSATIONS indexed" "$WORK/out" || { cat "$WORK/out" >&2; exit 1; }
    second+=$(measure "$BIN" --config "$WORK/$client.toml" index)$'\n'
    grep -q "$CONVERSATIONS unchanged" "$WORK/out" || { cat "$WORK/out" >&2; exit 1; }
  done
  row "custodian index, $client, first (every record read)" "$(printf '%s' "$first" | median)"
  row "custodian index, $client, again (nothing changed)" "$(printf '%s' "$second" | median)"
done
