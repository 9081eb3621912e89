#!/usr/bin/env bash
# Lifecycle figures, side by side in one run:
#   sweep: `custodian run lifecycle` deleting the FILES small transcripts of a synthetic
#     repository (one audit event each) against `find DIR -type f -mtime +N -delete` over an
#     identical copy whose transcripts are dated back (so -mtime selects exactly them); the
#     conversation.json records stay in both; custodian keeps the files under legal hold (about
#     2% of synth's conversations), find cannot know them. Files per second and peak RSS.
#   plan: `examples/lifecycle_scale.rs` over a catalog of ARTIFACTS artifacts: seconds to count
#     what is due and to list it, peak RSS.
#
#   scripts/compare-lifecycle.sh WORK_DIR     env: FILES=1000000 ARTIFACTS=10000000
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: scripts/compare-lifecycle.sh WORK_DIR}
FILES=${FILES:-1000000}
ARTIFACTS=${ARTIFACTS:-10000000}
command -v /usr/bin/time >/dev/null || { echo "compare-lifecycle.sh needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --quiet --bin custodian --example synth --example lifecycle_scale
BIN=$CARGO_TARGET_DIR/release/custodian
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
# Two identical trees, each written by synth (faster than copying a million small files).
rm -rf "$WORK/custodian" "$WORK/find" "$WORK/state"
for tree in custodian find; do
  "$CARGO_TARGET_DIR/release/examples/synth" "$WORK/$tree" --conversations "$FILES" --seconds 0
done
find "$WORK/find" -type f -name '*.txt' -exec touch -d 2025-01-01 {} +
cat > "$WORK/roles.toml" <<TOML
[users]
"*" = ["ARTIFACTS_LIFECYCLE_POLICY_READ", "ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_DELETE", "ARTIFACTS_LIFECYCLE_POLICY_RUN", "ARTIFACTS_LIFECYCLE_POLICY_FORCE"]
TOML
cat > "$WORK/lifecycle.toml" <<TOML
[catalog]
url = "sqlite:state/catalog.db"
[repository]
root = "custodian"
[lifecycle]
roles = "roles.toml"
TOML
C="$BIN --config $WORK/lifecycle.toml"
$C index >/dev/null
for t in transcript messaging_transcript; do
  $C lifecycle create "$t-30d" --artifact-type "$t" >/dev/null
  $C lifecycle version "$t-30d" v1 --delete-after-days 30 >/dev/null
  $C lifecycle enable "$t-30d" --acknowledge storage-overage --acknowledge irreversible-delete >/dev/null
done
sync

declare -A SECS RSS
measure() {
  local name=$1 cmd=$2 out
  /usr/bin/time -o "$WORK/.time" -f "%e %M" bash -c "$cmd" >/dev/null 2>"$WORK/.err" || { cat "$WORK/.err" >&2; exit 1; }
  out=$(tail -1 "$WORK/.time")
  SECS[$name]=${out% *}
  RSS[$name]=${out#* }
  printf '%-24s %8ss  %8s KB\n' "$name" "${SECS[$name]}" "${RSS[$name]}" >&2
}
measure "find -delete" "find $WORK/find -type f -mtime +30 -delete"
measure "custodian sweep" "$C run lifecycle --no-index --force"
left=$(find "$WORK/custodian" -type f -name '*.txt' | wc -l)
events=$("$BIN" --config "$WORK/lifecycle.toml" --json audit list --kind artifact_deleted --limit 100000000 | grep -c "\"kind\": \"artifact_deleted\"" || true)
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
scale=$("$CARGO_TARGET_DIR/release/examples/lifecycle_scale" "$WORK/scale.db" --conversations $((ARTIFACTS / 4)))
cat <<TABLE
| figure | custodian | reference | ratio |
|---|---|---|---|
| delete small files of $FILES conversations, one audit event each ($events deleted; $left under legal hold kept) | ${SECS[custodian sweep]} s ($(rate "$events" "${SECS[custodian sweep]}") files/s), ${RSS[custodian sweep]} KB peak | find -mtime +30 -delete of all $FILES: ${SECS[find -delete]} s ($(rate "$FILES" "${SECS[find -delete]}") files/s) | $(awk -v a="$(rate "$events" "${SECS[custodian sweep]}")" -v b="$(rate "$FILES" "${SECS[find -delete]}")" 'BEGIN { printf "%.2f", a / b }')x find's rate |
| plan over a catalog of $ARTIFACTS artifacts | $scale | | |
TABLE
