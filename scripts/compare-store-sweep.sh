#!/usr/bin/env bash
# Retention delete from a bucket, side by side on one loopback S3 server
# (examples/s3_server.rs --listed: s3s-fs with listings from the prefix's own directory and an
# ETag per object): `custodian run lifecycle` deleting the transcripts of a synthetic
# repository of CONVERSATIONS conversations (one transcript each, examples/synth.rs) in the
# bucket, one audit event each, against `rclone delete --min-age 30d` of the same transcripts
# (dated back so that --min-age selects exactly them) in a second bucket written the same way.
# Each side gets its own freshly written bucket; custodian's index runs before and is not
# timed. custodian keeps what legal holds keep (about 2% of synth's conversations); rclone
# cannot know them. Wall time, client CPU (user+sys) and the server's CPU per side.
#
#   scripts/compare-store-sweep.sh WORK_DIR     env: CONVERSATIONS=100000 PORT=9556
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: scripts/compare-store-sweep.sh WORK_DIR}
CONVERSATIONS=${CONVERSATIONS:-100000}
PORT=${PORT:-9556}
for tool in rclone /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "compare-store-sweep.sh needs $tool (apt-get install rclone time)" >&2; exit 2; }
done
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --quiet --no-default-features --features s3 --bin custodian --example synth --example s3_server
BIN=$CARGO_TARGET_DIR/release/custodian
SYNTH=$CARGO_TARGET_DIR/release/examples/synth
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
rm -rf "$WORK/store" "$WORK/state"
mkdir -p "$WORK/store"

# Plain HTTP on loopback: no CA bundle (rclone 1.60 fails to load one set for its AWS SDK).
unset AWS_CA_BUNDLE
export AWS_ACCESS_KEY_ID=compare AWS_SECRET_ACCESS_KEY=compare-secret-key
"$CARGO_TARGET_DIR/release/examples/s3_server" "$WORK/store" "$PORT" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" --listed 2>/dev/null &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
until (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; do sleep 0.1; done
export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other
export RCLONE_CONFIG_BENCH_ENDPOINT=http://127.0.0.1:$PORT RCLONE_CONFIG_BENCH_REGION=us-east-1
export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true
# The server lists with ListObjectsV2 only (rclone's `Other` provider would ask for version 1).
export RCLONE_CONFIG_BENCH_LIST_VERSION=2

# bucket NAME: a fresh bucket holding the synthetic repository under the prefix `site/`.
bucket() {
  rm -rf "${WORK:?}/store/$1"
  mkdir -p "$WORK/store/$1"
  "$SYNTH" "$WORK/store/$1/site" --conversations "$CONVERSATIONS" --seconds 0 --days 100 >/dev/null
  sync
}

cat > "$WORK/roles.toml" <<TOML
[users]
"*" = ["ARTIFACTS_LIFECYCLE_POLICY_READ", "ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_DELETE", "ARTIFACTS_LIFECYCLE_POLICY_RUN", "ARTIFACTS_LIFECYCLE_POLICY_FORCE"]
TOML
cat > "$WORK/sweep.toml" <<TOML
[catalog]
url = "sqlite:state/catalog.db"
[repository]
kind = "s3"
bucket = "custodian"
prefix = "site"
region = "us-east-1"
endpoint = "http://127.0.0.1:$PORT"
path_style = true
client = "aws_sdk"
[lifecycle]
roles = "roles.toml"
max_deletes_per_run = $CONVERSATIONS
max_delete_share = 1.0
TOML
C="$BIN --config $WORK/sweep.toml"

# server_ticks: the server's user+system CPU so far, in clock ticks.
server_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER/stat"; }
TICK=$(getconf CLK_TCK)
declare -A WALL CPU SRV
# measure NAME COMMAND: wall and client CPU seconds of one run, and the server's CPU meanwhile.
measure() {
  local name=$1 cmd=$2 before out
  before=$(server_ticks)
  (cd "$WORK" && /usr/bin/time -o "$WORK/.time" -f "%e %U %S" bash -c "$cmd" >/dev/null 2>"$WORK/.err") \
    || { cat "$WORK/.err" >&2; exit 1; }
  out=$(tail -1 "$WORK/.time")
  WALL[$name]=$(awk '{ print $1 }' <<<"$out")
  CPU[$name]=$(awk '{ printf "%.2f", $2 + $3 }' <<<"$out")
  SRV[$name]=$(awk -v a="$before" -v b="$(server_ticks)" -v t="$TICK" 'BEGIN { printf "%.2f", (b - a) / t }')
  printf '%-16s wall %8ss  client CPU %8ss  server CPU %8ss\n' "$name" "${WALL[$name]}" "${CPU[$name]}" "${SRV[$name]}" >&2
}

bucket custodian
(cd "$WORK" && $C index >/dev/null)
for t in transcript messaging_transcript; do
  (cd "$WORK" && $C lifecycle create "$t-30d" --artifact-type "$t" >/dev/null)
  (cd "$WORK" && $C lifecycle version "$t-30d" v1 --delete-after-days 30 >/dev/null)
  (cd "$WORK" && $C lifecycle enable "$t-30d" --acknowledge storage-overage --acknowledge irreversible-delete >/dev/null)
done
measure custodian "$C run lifecycle --no-index"
deleted=$("$BIN" --config "$WORK/sweep.toml" --json jobs list --policy lifecycle --limit 1 | grep -o '"deleted": *[0-9]*' | head -1 | grep -o '[0-9]*$' || true)
events=$("$BIN" --config "$WORK/sweep.toml" --json audit list --kind artifact_deleted --limit 100000000 | grep -c '"kind": "artifact_deleted"' || true)
left=$(find "$WORK/store/custodian" -type f -name '*.txt' | wc -l)
rm -rf "${WORK:?}/store/custodian"

bucket rclone
find "$WORK/store/rclone" -type f -name '*.txt' -exec touch -d 2025-01-01 {} +
sync
measure rclone "rclone delete bench:rclone/site --include '*.txt' --min-age 30d --use-server-modtime"
rleft=$(find "$WORK/store/rclone" -type f -name '*.txt' | wc -l)
rm -rf "${WORK:?}/store/rclone"

cat <<TABLE
| side | deleted | wall s | client CPU s | server CPU s | deletes/s |
|---|---|---|---|---|---|
| custodian run lifecycle | $events (one artifact_deleted event each; jobs: ${deleted:-?}; $left kept under legal hold) | ${WALL[custodian]} | ${CPU[custodian]} | ${SRV[custodian]} | $(awk -v n="$events" -v s="${WALL[custodian]}" 'BEGIN { printf "%.0f", n / s }') |
| rclone delete --min-age 30d | $((CONVERSATIONS - rleft)) (no audit) | ${WALL[rclone]} | ${CPU[rclone]} | ${SRV[rclone]} | $(awk -v n="$((CONVERSATIONS - rleft))" -v s="${WALL[rclone]}" 'BEGIN { printf "%.0f", n / s }') |
TABLE
