#!/usr/bin/env bash
# What standing legal holds cost the sweep (docs/performance.md#legal-holds), side by side in one
# run, each side on its own identical tree of FILES conversations' transcripts from
# examples/synth.rs (as scripts/compare-durability.sh makes its sweep trees), on a cold page cache:
#   holds: `run lifecycle` with everything due (delete after 30 days) and ten standing holds, one
#     matter each, covering every conversation started at or after an instant B (about 30 %);
#   no holds: `run lifecycle` without a matter, its version's days chosen so that its cutoff is B:
#     the same conversations are due (those ending by B), but for the few that started before B
#     and end after it (the holds side deletes them) and those whose end the cutoff passes while
#     the script runs (this side deletes them);
#   find: `find -mtime +30 -delete && sync` over a tree where exactly the files the holds side
#     deleted were dated back (the walk visits every file, as find does).
# Both sweeps keep the record-flagged holds too (`legal_hold` in 2 % of the records). Also the time
# of `plan lifecycle --no-index` on each catalog (the plan alone, without the index rerun `plan`
# starts with; warm cache, median of RUNS). Wall seconds, CPU seconds
# (user + system), peak RSS; files/s is each side's own count of deleted files.
#
#   scripts/compare-holds.sh WORK_DIR   env: FILES=1000000 RUNS=3 BIN=path/to/custodian
#     (default: build it); needs root for the cold cache (drop_caches).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: scripts/compare-holds.sh WORK_DIR}
FILES=${FILES:-1000000}
RUNS=${RUNS:-3}
for tool in /usr/bin/time jq; do
  command -v "$tool" >/dev/null || { echo "compare-holds.sh needs $tool (apt-get install time jq)" >&2; exit 2; }
done
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --quiet --bin custodian --example synth
BIN=${BIN:-$CARGO_TARGET_DIR/release/custodian}
EXAMPLES=$CARGO_TARGET_DIR/release/examples
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
export TZ=UTC

# row NAME PREPARE COMMAND: runs COMMAND in WORK after PREPARE and a sync, RUNS times; prints a
# table row with the run of median wall time (and every run's wall time), and, with COUNT (a
# command printing how many files the last run deleted), the files deleted per second.
row() {
  local name=$1 prepare=$2 cmd=$3 results=()
  for _ in $(seq "$RUNS"); do
    (cd "$WORK" && eval "$prepare") && sync
    (cd "$WORK" && /usr/bin/time -o "$WORK/.time" -f "%e %U %S %M" bash -c "$cmd" >/dev/null 2>"$WORK/.err") \
      || { echo "$name failed:" >&2; cat "$WORK/.err" >&2; exit 1; }
    results+=("$(tail -1 "$WORK/.time")")
  done
  local all median n= rate=
  all=$(printf '%s\n' "${results[@]}" | cut -d' ' -f1 | sort -n | tr '\n' ' ')
  median=$(printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
  read -r wall user sys rss <<< "$median"
  if [ -n "${COUNT:-}" ]; then
    n=$(eval "$COUNT")
    rate=$(awk -v n="$n" -v w="$wall" 'BEGIN { printf "%d", n / w }')
  fi
  printf '| %s | %s | %s | %s | %s | %s MB | %s|\n' "$name" "$n" "$wall" \
    "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" "$rate" "$((rss / 1024))" "$all"
}
header() {
  printf '\n%s\n\n| command | files deleted | wall s | CPU s | files/s | peak RSS | all runs (wall s) |\n|---|---|---|---|---|---|---|\n' "$1"
}
cold="sync && echo 3 > /proc/sys/vm/drop_caches"
deleted() { $1 --json audit list --kind artifact_deleted --limit 100000000 | jq length; }

dir=$WORK/holds
rm -rf "$dir" && mkdir -p "$dir"
for tree in holds noholds find; do
  "$EXAMPLES/synth" "$dir/$tree" --conversations "$FILES" --seconds 0 >/dev/null
done
cat > "$dir/roles.toml" <<TOML
[users]
"*" = ["ARTIFACTS_LIFECYCLE_POLICY_READ", "ARTIFACTS_LIFECYCLE_POLICY_CREATE", "ARTIFACTS_LIFECYCLE_POLICY_DELETE", "ARTIFACTS_LIFECYCLE_POLICY_RUN", "ARTIFACTS_LIFECYCLE_POLICY_FORCE", "LEGAL_HOLD_READ", "LEGAL_HOLD_MANAGE"]
TOML
for tree in holds noholds; do
  printf '[catalog]\nurl = "sqlite:state-%s/catalog.db"\n[repository]\nroot = "%s"\n[lifecycle]\nroles = "roles.toml"\n' "$tree" "$tree" > "$dir/$tree.toml"
done
H="$BIN --config $dir/holds.toml"
N="$BIN --config $dir/noholds.toml"

# synth spreads the conversations over 2026-01-01 to 2026-01-30 in each tenant's offset; B is
# about nine days before the end, a whole number of days before now, so that a version deleting
# after that many days has B as its cutoff.
now=$(date -u +%s)
days=$(( (now - $(date -u -d 2026-01-22T00:00:00Z +%s) + 43200) / 86400 ))
B=$(date -u -d "@$(( now - days * 86400 ))" +%Y-%m-%dT%H:%M:%SZ)
B3=$(date -u -d "@$(( now - days * 86400 + 3 * 86400 ))" +%Y-%m-%dT%H:%M:%SZ)

for c in "$H" "$N"; do
  $c index >/dev/null
  after=30
  [ "$c" = "$N" ] && after=$days
  for t in transcript messaging_transcript; do
    $c lifecycle create "$t" --artifact-type "$t" >/dev/null
    $c lifecycle version "$t" v1 --delete-after-days "$after" >/dev/null
    $c lifecycle enable "$t" --acknowledge storage-overage --acknowledge irreversible-delete >/dev/null
  done
done
# Ten matters, one standing hold each: the four tenants' cover everything from B on; the others
# overlap them with criteria of every kind the filter has.
hold() {
  local matter=$1
  shift
  $H hold create "$matter" >/dev/null
  $H hold add "$matter" --start-after "$B" "$@" >/dev/null
}
for t in 0 1 2 3; do hold "tenant-$t" --tenant "tenant-00$t"; done
hold users $(printf -- '--user user%03d ' $(seq 0 49))
hold extensions $(printf -- '--extension %d ' $(seq 1100 1119))
hold desk --conversation-type trader_voice --source-platform ipc --source-platform speakerbus
hold long-inbound --direction inbound --min-duration 20m
hold chats --artifact-type messaging_transcript --file-extension txt
hold week --start-before "$B3" --max-duration 10m

printf '\n%s conversations (%s transcripts); B = %s; no-holds version: delete after %s days\n' \
  "$FILES" "$FILES" "$B" "$days"
echo
echo "hold list:"
$H hold list
header "plan lifecycle --no-index, warm cache (median of $RUNS)"
row "plan lifecycle --no-index, ten standing holds" "true" "$H plan lifecycle --no-index"
row "plan lifecycle --no-index, no matter" "true" "$N plan lifecycle --no-index"
echo
echo "plan lifecycle, ten standing holds:"
$H plan lifecycle --no-index
echo "plan lifecycle, no matter:"
$N plan lifecycle --no-index

header "Lifecycle sweep of $FILES conversations' transcripts (cold page cache, one run each)"
COUNT='deleted "$H"' RUNS=1 row "custodian run lifecycle, ten standing holds" "$cold" "$H run lifecycle --no-index --force"
$H --json audit list --kind artifact_deleted --limit 100000000 | jq -r '.[].details.path' > "$dir/deleted.txt"
# What the sweep with holds deleted is what find deletes: those files are dated back (untimed).
COUNT='wc -l < "$dir/deleted.txt"' RUNS=1 row "find -mtime +30 -delete && sync" \
  "(cd holds/find && xargs -d '\\n' touch -d 2025-01-01 < ../deleted.txt) && $cold" \
  "find holds/find -type f -mtime +30 -delete && sync"
COUNT='deleted "$N"' RUNS=1 row "custodian run lifecycle, no matter" "$cold" "$N run lifecycle --no-index --force"
echo
echo "find left $(find "$dir/find" -name '*.txt' | wc -l) of $FILES transcripts; the sweep with holds $(( FILES - $(wc -l < "$dir/deleted.txt") ))."
ionice -c3 rm -rf "$dir"
