#!/usr/bin/env bash
# Export to S3 on loopback against `rclone copy` to the same server, side by side: the
# synthetic repository of CONVERSATIONS x 60 s 8 kHz WAV (each conversation a WAV and its
# conversation.json) is uploaded by rclone (default settings, then --transfers 16) and exported
# by custodian through each S3 client (aws-sdk-s3, object_store) to a local s3s-fs server
# (examples/s3_server.rs); then the same for LARGE conversations of 16,000 s (256 MB WAV,
# multipart uploads). Every run starts from an empty bucket; warm page cache; median wall time
# and peak RSS over RUNS runs. Prints a markdown table.
#
#   scripts/compare-s3.sh WORK_DIR     env: CONVERSATIONS=2000 LARGE=8 RUNS=3 PORT=9555
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: scripts/compare-s3.sh WORK_DIR}
CONVERSATIONS=${CONVERSATIONS:-2000}
LARGE=${LARGE:-8}
RUNS=${RUNS:-3}
PORT=${PORT:-9555}
for tool in rclone /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "compare-s3.sh needs $tool (apt-get install rclone time)" >&2; exit 2; }
done
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --quiet --bin custodian --example synth --example s3_server
BIN=$CARGO_TARGET_DIR/release/custodian
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
WAV=$WORK/wav-$CONVERSATIONS
BIG=$WORK/large-$LARGE
[ -d "$WAV" ] || "$CARGO_TARGET_DIR/release/examples/synth" "$WAV" --conversations "$CONVERSATIONS" --seconds 60 --rate 8000
[ -d "$BIG" ] || "$CARGO_TARGET_DIR/release/examples/synth" "$BIG" --conversations "$LARGE" --seconds 16000 --rate 8000

# Plain HTTP on loopback: no CA bundle (rclone 1.60 fails to load one set for its AWS SDK).
unset AWS_CA_BUNDLE
export AWS_ACCESS_KEY_ID=compare AWS_SECRET_ACCESS_KEY=compare-secret-key
mkdir -p "$WORK/store/bench"
"$CARGO_TARGET_DIR/release/examples/s3_server" "$WORK/store" "$PORT" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" 2>/dev/null &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
until (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; do sleep 0.1; done

export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other
export RCLONE_CONFIG_BENCH_ENDPOINT=http://127.0.0.1:$PORT RCLONE_CONFIG_BENCH_REGION=us-east-1
export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true

for repo in "wav-$CONVERSATIONS" "large-$LARGE"; do
for client in aws_sdk object_store; do
cat > "$WORK/$repo-$client.toml" <<TOML
[catalog]
url = "sqlite:state-$repo-$client/catalog.db"
[repository]
root = "$repo"
[targets.s3]
kind = "s3"
bucket = "bench"
prefix = "custodian"
region = "us-east-1"
endpoint = "http://127.0.0.1:$PORT"
path_style = true
client = "$client"
[policies.copy]
action = "export"
target = "s3"
mode = "full"
TOML
(cd "$WORK" && rm -rf "state-$repo-$client" && "$BIN" --config "$repo-$client.toml" index >/dev/null)
done
done

# measure NAME COMMAND: median seconds and max RSS (KB) over RUNS runs from an empty bucket.
declare -A SECS RSS
measure() {
  local name=$1 cmd=$2 times=() rss=0 out
  for _ in $(seq "$RUNS"); do
    rm -rf "$WORK/store/bench" && mkdir "$WORK/store/bench" && sync
    (cd "$WORK" && /usr/bin/time -o "$WORK/.time" -f "%e %M" bash -c "$cmd" >/dev/null 2>"$WORK/.err") \
      || { cat "$WORK/.err" >&2; exit 1; }
    out=$(tail -1 "$WORK/.time")
    times+=("${out% *}")
    (( ${out#* } > rss )) && rss=${out#* }
  done
  SECS[$name]=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
  RSS[$name]=$rss
  printf '%-34s %8ss  %8s KB  (runs: %s)\n' "$name" "${SECS[$name]}" "$rss" "${times[*]}" >&2
}

# table REPO: the four measurements of one repository as markdown rows.
table() {
  local repo=$1 bytes best
  bytes=$(du -sb --apparent-size "$WORK/$repo" | cut -f1)
  echo "warming the page cache" >&2
  find "$WORK/$repo" -type f -print0 | xargs -0 cat >/dev/null
  measure "rclone copy" "rclone copy $repo bench:bench/rclone"
  measure "rclone copy --transfers 16" "rclone copy --transfers 16 $repo bench:bench/rclone"
  measure "custodian (aws_sdk)" "$BIN --config $repo-aws_sdk.toml run copy --no-index"
  measure "custodian (object_store)" "$BIN --config $repo-object_store.toml run copy --no-index"
  best=${SECS[rclone copy]}
  awk -v a="${SECS[rclone copy --transfers 16]}" -v b="$best" 'BEGIN { exit !(a < b) }' && best=${SECS[rclone copy --transfers 16]}
  for name in "rclone copy" "rclone copy --transfers 16" "custodian (aws_sdk)" "custodian (object_store)"; do
    echo "| $repo ($(( bytes / 1000000 )) MB) | $name | ${SECS[$name]} s | $(awk -v b="$bytes" -v s="${SECS[$name]}" 'BEGIN { printf "%.0f", b / s / 1e6 }') | ${RSS[$name]} KB | $(awk -v a="$best" -v b="${SECS[$name]}" 'BEGIN { printf "%.2f", a / b }')x |"
  done
}

echo "| repository | tool | time | MB/s | peak RSS | speed vs rclone's best |"
echo "|---|---|---|---|---|---|"
table "wav-$CONVERSATIONS"
table "large-$LARGE"
