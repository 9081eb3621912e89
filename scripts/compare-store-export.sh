#!/usr/bin/env bash
# Export from an S3 repository to an S3 target on the same server, against
# `rclone copy bench:repo bench:archive` (which also copies server-side), side by side in one
# run: the synthetic repository of CONVERSATIONS x 60 s 8 kHz WAV (each conversation a WAV and
# its conversation.json) is uploaded once to the bucket `repo` of a local s3s-fs server
# (examples/s3_server.rs, which returns a copy's SHA-256 when asked, as S3 does); then rclone
# (default settings, then --transfers 16) and custodian (aws_sdk client, server-side copy)
# copy it to an empty bucket, in RUNS rounds of one run each. Reports the median wall time and,
# for that run, the CPU seconds of the client and of the server (they share the machine's
# cores, so wall time alone misleads), and CPU per GB; then, per round, custodian's speed and
# client CPU against rclone's best of the same round (the median of those ratios). The
# catalog is filled by indexing the same repository on disk (`--no-index` then selects from
# it). LATENCY_MS=N has the server answer every request N ms late, as a store that far away
# would (examples/s3_server.rs).
#
# The server's store is a directory of the script's own, made in STORE_DIR (default /dev/shm,
# a tmpfs: about twice the repository in memory) and removed at the end. Each run's bucket is
# removed after the run together with the files s3s-fs keeps beside it in the store's root
# (an `.internal.json` and a `.metadata.json` an object). On a disk store these files pile up in one directory over the
# runs (8,000 more a run here), and ext4 skips the inodes freed in the last 30 seconds when it
# creates files, so either keeping or removing them makes each run's server slower than the
# last; on tmpfs neither applies. On a disk store (STORE_DIR elsewhere) the buckets are kept
# until the end, as before, and the growing directory is part of what is measured.
#
# CONCURRENCY=N sets the export policy's `concurrency` (worker threads; 16 for a remote target
# when unset).
#
#   scripts/compare-store-export.sh WORK_DIR     env: CONVERSATIONS=2000 RUNS=3 PORT=9556 LATENCY_MS=0 STORE_DIR=DIR CONCURRENCY=N
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: scripts/compare-store-export.sh WORK_DIR}
CONVERSATIONS=${CONVERSATIONS:-2000}
RUNS=${RUNS:-3}
PORT=${PORT:-9556}
LATENCY_MS=${LATENCY_MS:-0}
STORE_DIR=${STORE_DIR:-/dev/shm}
for tool in rclone /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "compare-store-export.sh needs $tool (apt-get install rclone time)" >&2; exit 2; }
done
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --quiet --no-default-features --features s3 --bin custodian --example synth --example s3_server
BIN=$CARGO_TARGET_DIR/release/custodian
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
WAV=$WORK/wav-$CONVERSATIONS
[ -d "$WAV" ] || "$CARGO_TARGET_DIR/release/examples/synth" "$WAV" --conversations "$CONVERSATIONS" --seconds 60 --rate 8000
BYTES=$(du -sb --apparent-size "$WAV" | cut -f1)

unset AWS_CA_BUNDLE
export AWS_ACCESS_KEY_ID=compare AWS_SECRET_ACCESS_KEY=compare-secret-key
STORE=$(mktemp -d "$STORE_DIR/custodian-store-export.XXXXXX")
SERVER=
trap 'kill $SERVER 2>/dev/null; rm -rf "$STORE"' EXIT
mkdir "$STORE/repo"
TMPFS=$([ "$(stat -f -c %T "$STORE")" = tmpfs ] && echo 1 || echo 0)
"$CARGO_TARGET_DIR/release/examples/s3_server" "$STORE" "$PORT" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" \
  --latency-ms "$LATENCY_MS" 2>/dev/null &
SERVER=$!
until (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; do sleep 0.1; done

export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other
export RCLONE_CONFIG_BENCH_ENDPOINT=http://127.0.0.1:$PORT RCLONE_CONFIG_BENCH_REGION=us-east-1
export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true
echo "uploading the repository" >&2
rclone copy --transfers 16 "$WAV" bench:repo

cat > "$WORK/index.toml" <<TOML
[catalog]
url = "sqlite:state-store-export/catalog.db"
[repository]
root = "wav-$CONVERSATIONS"
TOML
cat > "$WORK/store-export.toml" <<TOML
[catalog]
url = "sqlite:state-store-export/catalog.db"
[repository]
kind = "s3"
bucket = "repo"
region = "us-east-1"
endpoint = "http://127.0.0.1:$PORT"
path_style = true
[targets.s3]
kind = "s3"
bucket = "archive"
prefix = "custodian"
region = "us-east-1"
endpoint = "http://127.0.0.1:$PORT"
path_style = true
[policies.copy]
action = "export"
target = "s3"
mode = "full"
${CONCURRENCY:+concurrency = $CONCURRENCY}
TOML
(cd "$WORK" && rm -rf state-store-export state-indexed && "$BIN" --config index.toml index >/dev/null &&
  cp -a state-store-export state-indexed)

# The server's CPU seconds so far (user + system).
server_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$SERVER/stat"
}

# drop_bucket NAME: the bucket and the files s3s-fs keeps for its objects in the store's root
# (named `.bucket-BASE64URL(NAME).object-...`).
drop_bucket() {
  local tag
  tag=$(printf '%s' "$1" | base64 | tr '+/' '-_' | tr -d '=')
  rm -rf "${STORE:?}/$1"
  find "$STORE" -maxdepth 1 -name ".bucket-$tag.*" -delete
}

# run_once NAME COMMAND: one run into a bucket of its own, `archive-N` (the command's
# ARCHIVE); appends its wall time, client CPU and server CPU to ROWS[NAME]. The bucket is
# checked by the caller and removed by the next run (on tmpfs; see the top).
declare -A ROWS SECS CPU SCPU
RUN=0
run_once() {
  local name=$1 cmd=$2 before after
  [ "$TMPFS" = 1 ] && [ "$RUN" -gt 0 ] && drop_bucket "archive-$RUN"
  RUN=$((RUN + 1))
  mkdir "$STORE/archive-$RUN"
  # Every export is a first one: the catalog as the index left it.
  rm -rf "$WORK/state-store-export" && cp -a "$WORK/state-indexed" "$WORK/state-store-export"
  sed "s/^bucket = \"archive\"/bucket = \"archive-$RUN\"/" "$WORK/store-export.toml" >"$WORK/store-export-run.toml"
  sync
  before=$(server_cpu)
  (cd "$WORK" && ARCHIVE=archive-$RUN /usr/bin/time -o "$WORK/.time" -f "%e %U %S" bash -c "$cmd" >/dev/null 2>"$WORK/.err") \
    || { cat "$WORK/.err" >&2; exit 1; }
  after=$(server_cpu)
  read -r wall user sys < <(tail -1 "$WORK/.time")
  LAST_WALL=$wall LAST_CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
  ROWS[$name]+="$wall $LAST_CPU $(awk -v a="$before" -v b="$after" 'BEGIN { printf "%.2f", b - a }')"$'\n'
}

# RUNS rounds, each running every tool once in turn (a drift of the machine during the
# measurement touches every tool alike); keeps each tool's median run by wall time.
NAMES=("rclone copy" "rclone copy --transfers 16" "custodian (server-side copy)")
declare -A CMDS=(
  ["rclone copy"]='rclone copy bench:repo "bench:$ARCHIVE/rclone"'
  ["rclone copy --transfers 16"]='rclone copy --transfers 16 bench:repo "bench:$ARCHIVE/rclone"'
  ["custodian (server-side copy)"]="$BIN --config store-export-run.toml run copy --no-index"
)
# Per round: rclone's best wall time over custodian's, and custodian's client CPU over
# rclone's least (the machine drifts between rounds, far less within one).
SPEEDS="" CPUS=""
for round in $(seq "$RUNS"); do
  best_wall="" least_cpu=""
  for name in "${NAMES[@]}"; do
    run_once "$name" "${CMDS[$name]}"
    case $name in
      rclone*)
        awk -v a="$LAST_WALL" -v b="${best_wall:-1e9}" 'BEGIN { exit !(a < b) }' && best_wall=$LAST_WALL
        awk -v a="$LAST_CPU" -v b="${least_cpu:-1e9}" 'BEGIN { exit !(a < b) }' && least_cpu=$LAST_CPU ;;
      *)
        SPEEDS+="$(awk -v a="$best_wall" -v b="$LAST_WALL" 'BEGIN { printf "%.2f", a / b }')"$'\n'
        CPUS+="$(awk -v a="$LAST_CPU" -v b="$least_cpu" 'BEGIN { printf "%.2f", a / b }')"$'\n' ;;
    esac
  done
  files=$(find "$STORE/archive-$RUN/custodian" -type f -name '*.wav' | wc -l)
  [ "$files" -eq "$CONVERSATIONS" ] || { echo "custodian exported $files of $CONVERSATIONS WAVs" >&2; exit 1; }
  echo "round $round of $RUNS done" >&2
done
for name in "${NAMES[@]}"; do
  read -r wall cpu scpu < <(printf '%s' "${ROWS[$name]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
  SECS[$name]=$wall CPU[$name]=$cpu SCPU[$name]=$scpu
  printf '%-30s %8ss  client %6s CPU-s  server %6s CPU-s  (runs: %s)\n' "$name" "$wall" "$cpu" "$scpu" "$(printf '%s' "${ROWS[$name]}" | paste -sd ';')" >&2
done

best=${SECS[rclone copy]}
bestcpu=${CPU[rclone copy]}
awk -v a="${SECS[rclone copy --transfers 16]}" -v b="$best" 'BEGIN { exit !(a < b) }' && best=${SECS[rclone copy --transfers 16]}
awk -v a="${CPU[rclone copy --transfers 16]}" -v b="$bestcpu" 'BEGIN { exit !(a < b) }' && bestcpu=${CPU[rclone copy --transfers 16]}
echo "| tool | wall | client CPU-s | client CPU-s per GB | server CPU-s | speed vs rclone's best | client CPU vs rclone's least |"
echo "|---|---|---|---|---|---|---|"
for name in "rclone copy" "rclone copy --transfers 16" "custodian (server-side copy)"; do
  echo "| $name | ${SECS[$name]} s | ${CPU[$name]} | $(awk -v c="${CPU[$name]}" -v b="$BYTES" 'BEGIN { printf "%.2f", c / (b / 1e9) }') | ${SCPU[$name]} | $(awk -v a="$best" -v b="${SECS[$name]}" 'BEGIN { printf "%.2f", a / b }')x | $(awk -v a="$bestcpu" -v b="${CPU[$name]}" 'BEGIN { printf "%.2f", b / a }')x |"
done
median() { printf '%s' "$1" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p"; }
echo "repository: $CONVERSATIONS conversations, $(( BYTES / 1000000 )) MB; every request answered $LATENCY_MS ms late"
echo "per round, custodian against rclone's best of the same round: speed $(median "$SPEEDS")x (median; rounds: $(printf '%s' "$SPEEDS" | paste -sd ' ')), client CPU $(median "$CPUS")x (rounds: $(printf '%s' "$CPUS" | paste -sd ' '))"
