#!/usr/bin/env bash
# What durability costs (docs/performance.md#durability), side by side in one run:
#   export: 2,000 x 60 s WAV exported durably against `cp -r … && sync` (as durable) and
#     `rclone copy` (which syncs nothing), and against this build's `durability =
#     "unsafe_no_sync"` and, with BEFORE, an older build (no syncs, SQLite synchronous=NORMAL).
#   index: a fresh index of INDEX_CONVERSATIONS small conversations (SQLite synchronous=FULL),
#     against BEFORE.
#   sweep: the lifecycle sweep of FILES transcripts against `find -delete && sync` over an
#     identical copy (the setup of scripts/compare-lifecycle.sh), and with BEFORE on a third.
#   confidential: an incremental confidential-flag run setting the flag of FLAGS conversations
#     (a catalog from examples/lifecycle_scale.rs), this build against BEFORE on a catalog made
#     by BEFORE_SCALE (that build's lifecycle_scale).
# Each figure is the median of RUNS runs, each right after `sync`, warm page cache for the
# sources; the sweep and the confidential run change what they run on, so they run once (the sweep
# on a cold page cache). Wall seconds, CPU seconds (user + system), peak RSS.
#
#   scripts/compare-durability.sh WORK_DIR   env: SECTIONS="export index sweep confidential"
#     CONVERSATIONS=2000 INDEX_CONVERSATIONS=200000 FILES=1000000 FLAGS=1000000 RUNS=3
#     BIN=path/to/custodian (default: build it) BEFORE=path/to/an/older/custodian
#     BEFORE_SCALE=path/to/the/older/build's/examples/lifecycle_scale
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: scripts/compare-durability.sh WORK_DIR}
SECTIONS=${SECTIONS:-export index sweep confidential}
CONVERSATIONS=${CONVERSATIONS:-2000}
INDEX_CONVERSATIONS=${INDEX_CONVERSATIONS:-200000}
FILES=${FILES:-1000000}
FLAGS=${FLAGS:-1000000}
RUNS=${RUNS:-3}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
for tool in rclone /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "compare-durability.sh needs $tool (apt-get install rclone time)" >&2; exit 2; }
done
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --quiet --bin custodian --example synth --example lifecycle_scale
BIN=${BIN:-$CARGO_TARGET_DIR/release/custodian}
EXAMPLES=$CARGO_TARGET_DIR/release/examples
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
export TZ=UTC

# row NAME PREPARE COMMAND: runs COMMAND in WORK after PREPARE and a sync, RUNS times; prints a
# table row with the run of median wall time (and every run's wall time).
row() {
  local name=$1 prepare=$2 cmd=$3 results=()
  for _ in $(seq "$RUNS"); do
    (cd "$WORK" && eval "$prepare") && sync
    (cd "$WORK" && /usr/bin/time -o "$WORK/.time" -f "%e %U %S %M" bash -c "$cmd" >/dev/null 2>"$WORK/.err") \
      || { echo "$name failed:" >&2; cat "$WORK/.err" >&2; exit 1; }
    results+=("$(tail -1 "$WORK/.time")")
  done
  local all median
  all=$(printf '%s\n' "${results[@]}" | cut -d' ' -f1 | sort -n | tr '\n' ' ')
  median=$(printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
  read -r wall user sys rss <<< "$median"
  printf '| %s | %s | %s | %s MB | %s|\n' "$name" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" "$((rss / 1024))" "$all"
}
header() {
  printf '\n%s\n\n| command | wall s | CPU s | peak RSS | all runs (wall s) |\n|---|---|---|---|---|\n' "$1"
}

if want export; then
  wav=wav-$CONVERSATIONS
  [ -d "$WORK/$wav" ] || "$EXAMPLES/synth" "$WORK/$wav" --conversations "$CONVERSATIONS" --seconds 60 --rate 8000
  for build in after unsafe before; do
    durability=durable
    [ "$build" = unsafe ] && durability=unsafe_no_sync
    cat > "$WORK/export-$build.toml" <<TOML
[catalog]
url = "sqlite:state-$build/catalog.db"
[repository]
root = "$wav"
[targets.out]
kind = "filesystem"
path = "out"
$( [ "$build" = before ] || echo "durability = \"$durability\"" )
[policies.copy]
action = "export"
target = "out"
mode = "full"
TOML
  done
  find "$WORK/$wav" -type f -print0 | xargs -0 cat >/dev/null
  header "Export of $CONVERSATIONS x 60 s WAV ($(du -sm "$WORK/$wav" | cut -f1) MB)"
  (cd "$WORK" && rm -rf state-after state-unsafe && "$BIN" --config export-after.toml index >/dev/null \
    && "$BIN" --config export-unsafe.toml index >/dev/null)
  row "cp -r && sync" "rm -rf out" "cp -r $wav out && sync"
  row "rclone copy (no sync)" "rm -rf out" "rclone copy $wav out"
  row "custodian, durable" "rm -rf out" "$BIN --config export-after.toml run copy --no-index"
  row "custodian, unsafe_no_sync" "rm -rf out" "$BIN --config export-unsafe.toml run copy --no-index"
  if [ -n "${BEFORE:-}" ]; then
    (cd "$WORK" && rm -rf state-before && "$BEFORE" --config export-before.toml index >/dev/null)
    row "before (no syncs, synchronous=NORMAL)" "rm -rf out" "$BEFORE --config export-before.toml run copy --no-index"
  fi
  rm -rf "$WORK/out"
fi

if want index; then
  small=small-$INDEX_CONVERSATIONS
  [ -d "$WORK/$small" ] || "$EXAMPLES/synth" "$WORK/$small" --conversations "$INDEX_CONVERSATIONS" --seconds 0
  printf '[catalog]\nurl = "sqlite:state-index/catalog.db"\n[repository]\nroot = "%s"\n' "$small" > "$WORK/index.toml"
  find "$WORK/$small" -type f -print0 | xargs -0 cat >/dev/null
  header "Fresh index of $INDEX_CONVERSATIONS conversations"
  row "custodian index (synchronous=FULL)" "rm -rf state-index" "$BIN --config index.toml index"
  if [ -n "${BEFORE:-}" ]; then
    row "before index (synchronous=NORMAL)" "rm -rf state-index" "$BEFORE --config index.toml index"
  fi
  rm -rf "$WORK/state-index"
fi

if want sweep; then
  rm -rf "$WORK/sweep" && mkdir -p "$WORK/sweep"
  trees="custodian find"
  [ -n "${BEFORE:-}" ] && trees="$trees before"
  for tree in $trees; do
    "$EXAMPLES/synth" "$WORK/sweep/$tree" --conversations "$FILES" --seconds 0
  done
  find "$WORK/sweep/find" -type f -name '*.txt' -exec touch -d 2025-01-01 {} +
  cat > "$WORK/sweep/roles.toml" <<TOML
[users]
"*" = ["ARTIFACTS_LIFECYCLE_POLICY_READ", "ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_DELETE", "ARTIFACTS_LIFECYCLE_POLICY_RUN", "ARTIFACTS_LIFECYCLE_POLICY_FORCE"]
TOML
  printf '[catalog]\nurl = "sqlite:state/catalog.db"\n[repository]\nroot = "custodian"\n[lifecycle]\nroles = "roles.toml"\n' > "$WORK/sweep/lifecycle.toml"
  sed 's#state/#state-before/#; s#root = "custodian"#root = "before"#' "$WORK/sweep/lifecycle.toml" > "$WORK/sweep/before.toml"
  C="$BIN --config $WORK/sweep/lifecycle.toml"
  B="${BEFORE:-} --config $WORK/sweep/before.toml"
  for c in "$C" ${BEFORE:+"$B"}; do
    $c index >/dev/null
    for t in transcript messaging_transcript; do
      $c lifecycle create "$t-30d" --artifact-type "$t" >/dev/null
      $c lifecycle version "$t-30d" v1 --delete-after-days 30 >/dev/null
      $c lifecycle enable "$t-30d" --acknowledge storage-overage --acknowledge irreversible-delete >/dev/null
    done
  done
  header "Lifecycle sweep of $FILES conversations' transcripts (cold page cache)"
  RUNS=1 row "find -mtime +30 -delete && sync" "sync && echo 3 > /proc/sys/vm/drop_caches" "find sweep/find -type f -mtime +30 -delete && sync"
  RUNS=1 row "custodian run lifecycle, durable" "sync && echo 3 > /proc/sys/vm/drop_caches" "$C run lifecycle --no-index --force"
  if [ -n "${BEFORE:-}" ]; then
    RUNS=1 row "before run lifecycle" "sync && echo 3 > /proc/sys/vm/drop_caches" "$B run lifecycle --no-index --force"
  fi
  echo
  echo "custodian deleted $($C --json audit list --kind artifact_deleted --limit 100000000 | grep -c '"kind": "artifact_deleted"' || true) transcripts (the rest are under legal hold); find deleted $FILES."
  rm -rf "$WORK/sweep"
fi

if want confidential; then
  dir=$WORK/confidential
  rm -rf "$dir" && mkdir -p "$dir/repo"
  "$EXAMPLES/lifecycle_scale" "$dir/catalog.db" --conversations "$FLAGS" >/dev/null
  if [ -n "${BEFORE:-}" ]; then
    # An older build refuses a catalog a newer one migrated: its own example makes its catalog.
    "${BEFORE_SCALE:?with BEFORE, set BEFORE_SCALE to the older build of examples/lifecycle_scale}" \
      "$dir/catalog-before.db" --conversations "$FLAGS" >/dev/null
  fi
  for build in after before; do
    db=catalog.db
    [ "$build" = before ] && db=catalog-before.db
    printf '[catalog]\nurl = "sqlite:%s"\n[repository]\nroot = "repo"\n[policies.everything]\naction = "confidential"\nflag = "set"\nmode = "incremental"\n' "$db" > "$dir/$build.toml"
  done
  header "Incremental confidential-flag run over $FLAGS conversations (sets the flag on those without it)"
  RUNS=1 row "custodian (synchronous=FULL)" "true" "$BIN --config confidential/after.toml run everything --no-index"
  if [ -n "${BEFORE:-}" ]; then
    RUNS=1 row "before (synchronous=NORMAL)" "true" "$BEFORE --config confidential/before.toml run everything --no-index"
  fi
  rm -rf "$dir"
fi
