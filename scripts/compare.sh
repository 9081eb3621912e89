#!/usr/bin/env bash
# Side-by-side figures on this machine, in one run, one markdown table per section:
#   export: export (copy + SHA-256 manifest) of 2,000 x 60 s 8 kHz WAV against `cp -r` and
#     `rclone copy`; index of N small conversations against the floor of reading (and of
#     finding) every conversation.json. Warm page cache; each command runs RUNS times on a
#     fresh destination (synced before it starts); median wall time and peak RSS.
#   crypto: `custodian decrypt` of 1 GB against `cp` (scripts/compare-crypto.sh)
#   audio: transcode and MP3 decode against sox and ffmpeg, G.711 identity and resampling SNR
#     against sox (scripts/compare-audio.sh)
#   stitch: a 1-hour call and a whole 24-hour channel against sox (scripts/compare-stitch.sh)
#   s3: export to a loopback S3 server against rclone copy (scripts/compare-s3.sh)
#   lifecycle: the retention sweep against find -delete, planning at scale (scripts/compare-lifecycle.sh)
#
#   scripts/compare.sh [WORK_DIR]     env: SECTIONS="export crypto audio stitch s3 lifecycle"
#                                          CONVERSATIONS=2000 INDEX_CONVERSATIONS=1000000 RUNS=3
#                                          BASELINE=path/to/an/older/custodian (export section:
#                                          the same runs with that binary, right after, for a
#                                          before/after table measured in one run)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-${TMPDIR:-/tmp}/custodian-compare}
CONVERSATIONS=${CONVERSATIONS:-2000}
INDEX_CONVERSATIONS=${INDEX_CONVERSATIONS:-1000000}
RUNS=${RUNS:-3}
SECTIONS=${SECTIONS:-export crypto audio stitch s3 lifecycle}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
# The export and index figures (kept unindented for the here-documents).
export_section() {
for tool in rclone /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "compare.sh needs $tool (apt-get install rclone time)" >&2; exit 2; }
done
cargo build --release --quiet --bin custodian --example synth
BIN=$CARGO_TARGET_DIR/release/custodian
SYNTH=$CARGO_TARGET_DIR/release/examples/synth
mkdir -p "$WORK"
WAV=$WORK/wav-$CONVERSATIONS
SMALL=$WORK/small-$INDEX_CONVERSATIONS
[ -d "$WAV" ] || "$SYNTH" "$WAV" --conversations "$CONVERSATIONS" --seconds 60 --rate 8000
[ -d "$SMALL" ] || "$SYNTH" "$SMALL" --conversations "$INDEX_CONVERSATIONS" --seconds 0

cat > "$WORK/export.toml" <<TOML
[catalog]
url = "sqlite:state-export/catalog.db"
[repository]
root = "wav-$CONVERSATIONS"
[targets.out]
kind = "filesystem"
path = "out-custodian"
[policies.copy]
action = "export"
target = "out"
mode = "full"
TOML
cat > "$WORK/index.toml" <<TOML
[catalog]
url = "sqlite:state-index/catalog.db"
[repository]
root = "small-$INDEX_CONVERSATIONS"
TOML

# measure NAME PREPARE COMMAND: median seconds and max RSS (KB) over RUNS runs.
declare -gA SECS RSS
measure() {
  local name=$1 prepare=$2 cmd=$3 times=() rss=0
  for _ in $(seq "$RUNS"); do
    (cd "$WORK" && eval "$prepare") && sync
    local out
    (cd "$WORK" && /usr/bin/time -o "$WORK/.time" -f "%e %M" bash -c "$cmd" >/dev/null 2>&1) || true
    out=$(tail -1 "$WORK/.time")
    times+=("${out% *}")
    (( ${out#* } > rss )) && rss=${out#* }
  done
  SECS[$name]=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
  RSS[$name]=$rss
  printf '%-28s %8ss  %8s KB  (runs: %s)\n' "$name" "${SECS[$name]}" "$rss" "${times[*]}" >&2
}

echo "warming the page cache" >&2
find "$WAV" "$SMALL" -type f -print0 | xargs -0 cat >/dev/null
(cd "$WORK" && rm -rf state-export && "$BIN" --config export.toml index >/dev/null)

measure "cp -r" "rm -rf out-cp" "cp -r wav-$CONVERSATIONS out-cp"
measure "rclone copy" "rm -rf out-rclone" "rclone copy wav-$CONVERSATIONS out-rclone"
measure "rclone copy --transfers 16" "rm -rf out-rclone" "rclone copy --transfers 16 wav-$CONVERSATIONS out-rclone"
measure "custodian run (export)" "rm -rf out-custodian" "$BIN --config export.toml run copy --no-index"
if [ -n "${BASELINE:-}" ]; then
  # An older build refuses a catalog a newer one migrated: the baseline gets its own.
  sed 's#state-export/#state-export-base/#' "$WORK/export.toml" > "$WORK/export-base.toml"
  (cd "$WORK" && rm -rf state-export-base && "$BASELINE" --config export-base.toml index >/dev/null)
  measure "baseline run (export)" "rm -rf out-custodian" "$BASELINE --config export-base.toml run copy --no-index"
fi
rm -rf "$WORK/out-cp" "$WORK/out-rclone" "$WORK/out-custodian"

measure "find + cat (read floor)" "true" "find small-$INDEX_CONVERSATIONS -name conversation.json -print0 | xargs -0 cat"
measure "find (walk floor)" "true" "find small-$INDEX_CONVERSATIONS -name conversation.json"
measure "custodian index (fresh)" "rm -rf state-index" "$BIN --config index.toml index"
measure "custodian index (rerun)" "true" "$BIN --config index.toml index"
if [ -n "${BASELINE:-}" ]; then
  measure "baseline index (fresh)" "rm -rf state-index" "$BASELINE --config index.toml index"
  measure "baseline index (rerun)" "true" "$BASELINE --config index.toml index"
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
bytes=$(du -sb "$WAV" | cut -f1)
mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
cat <<TABLE
| figure | custodian | reference | ratio |
|---|---|---|---|
| export $CONVERSATIONS x 60 s WAV ($(( bytes / 1000000 )) MB), copy + SHA-256 manifest | ${SECS[custodian run (export)]} s ($(mbps "${SECS[custodian run (export)]}") MB/s), ${RSS[custodian run (export)]} KB peak | cp -r ${SECS[cp -r]} s | $(ratio "${SECS[custodian run (export)]}" "${SECS[cp -r]}")x cp's time |
| same | | rclone copy ${SECS[rclone copy]} s | $(ratio "${SECS[rclone copy]}" "${SECS[custodian run (export)]}")x faster than rclone |
| same | | rclone copy --transfers 16 ${SECS[rclone copy --transfers 16]} s | $(ratio "${SECS[rclone copy --transfers 16]}" "${SECS[custodian run (export)]}")x faster |
| index $INDEX_CONVERSATIONS conversations, fresh catalog | ${SECS[custodian index (fresh)]} s, ${RSS[custodian index (fresh)]} KB peak | find + cat ${SECS[find + cat (read floor)]} s | $(ratio "${SECS[custodian index (fresh)]}" "${SECS[find + cat (read floor)]}")x the read floor |
| index rerun, nothing changed | ${SECS[custodian index (rerun)]} s, ${RSS[custodian index (rerun)]} KB peak | find ${SECS[find (walk floor)]} s | $(ratio "${SECS[custodian index (rerun)]}" "${SECS[find (walk floor)]}")x the walk floor |
TABLE
if [ -n "${BASELINE:-}" ]; then
cat <<TABLE

| figure | baseline ($BASELINE) | this build | ratio |
|---|---|---|---|
| export $CONVERSATIONS x 60 s WAV | ${SECS[baseline run (export)]} s, ${RSS[baseline run (export)]} KB peak | ${SECS[custodian run (export)]} s, ${RSS[custodian run (export)]} KB peak | $(ratio "${SECS[custodian run (export)]}" "${SECS[baseline run (export)]}")x |
| index $INDEX_CONVERSATIONS conversations, fresh catalog | ${SECS[baseline index (fresh)]} s, ${RSS[baseline index (fresh)]} KB peak | ${SECS[custodian index (fresh)]} s, ${RSS[custodian index (fresh)]} KB peak | $(ratio "${SECS[custodian index (fresh)]}" "${SECS[baseline index (fresh)]}")x |
| index rerun, nothing changed | ${SECS[baseline index (rerun)]} s | ${SECS[custodian index (rerun)]} s | $(ratio "${SECS[custodian index (rerun)]}" "${SECS[baseline index (rerun)]}")x |
TABLE
fi
}

want export && export_section
want crypto && bash scripts/compare-crypto.sh "$WORK/crypto"
want audio && bash scripts/compare-audio.sh "$WORK/audio"
want stitch && bash scripts/compare-stitch.sh "$WORK/stitch"
want s3 && bash scripts/compare-s3.sh "$WORK/s3"
want lifecycle && bash scripts/compare-lifecycle.sh "$WORK/lifecycle"
exit 0
