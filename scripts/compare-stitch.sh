#!/usr/bin/env bash
# Stitching against sox, side by side: a 24-hour turret channel of 24 one-hour 8 kHz mono
# segments (made by sox, one recorder gap of 10 s after every hour) is stitched by custodian
# for a 1-hour call and for the whole day; sox concatenates and trims the same segments.
# Reports seconds of audio produced per second of wall time and peak RSS (memory must not
# grow with the length of the call).
#
#   scripts/compare-stitch.sh WORK_DIR     env: HOURS=24
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: scripts/compare-stitch.sh WORK_DIR}
HOURS=${HOURS:-24}
for tool in sox sha256sum /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "compare-stitch.sh needs $tool (apt-get install sox time)" >&2; exit 2; }
done
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --quiet --bin custodian
BIN=$CARGO_TARGET_DIR/release/custodian
CH=$WORK/channel-$HOURS
mkdir -p "$CH"
WORK=$(realpath "$WORK")
CH=$(realpath "$CH")
GAP=10
# segment h starts at 00:00 + h * (3600 + GAP) seconds
for h in $(seq 0 $((HOURS - 1))); do
  f=$(printf 'seg-%02d.wav' "$h")
  [ -f "$CH/$f" ] || sox -n -r 8000 -c 1 -b 16 "$CH/$f" synth 3600 sine $((300 + h * 10)) gain -6
  start=$(date -u -d "@$((1767225600 + h * (3600 + GAP)))" +%Y-%m-%dT%H:%M:%SZ)
  printf '{"schema":1,"channel":"channel-%s","file":"%s","start":"%s","sample_rate":8000,"channels":1,"frames":28800000,"size":%s,"sha256":"%s"}\n' \
    "$HOURS" "$f" "$start" "$(stat -c %s "$CH/$f")" "$(sha256sum "$CH/$f" | cut -d' ' -f1)" >"$CH/${f%.wav}.json"
done
cat "$CH"/*.wav >/dev/null

# run NAME COMMAND: wall seconds and peak RSS (KB)
run() {
  /usr/bin/time -o "$WORK/.time" -f "%e %M" bash -c "$2" >/dev/null 2>"$WORK/.stderr" ||
    { echo "$1 failed:" >&2; cat "$WORK/.stderr" >&2; exit 1; }
  read -r secs rss <"$WORK/.time"
  echo "$1 $secs $rss"
}
day_end=$(date -u -d "@$((1767225600 + HOURS * (3600 + GAP) - GAP))" +%Y-%m-%dT%H:%M:%SZ)
total=$((HOURS * (3600 + GAP) - GAP))
# the 1-hour call spans the middle segment boundary and its gap
mid=$((1767225600 + HOURS / 2 * (3600 + GAP) - 1800))
hour_start=$(date -u -d "@$mid" +%Y-%m-%dT%H:%M:%SZ)
hour_end=$(date -u -d "@$((mid + 3600))" +%Y-%m-%dT%H:%M:%SZ)
read -r _ hour_s hour_rss < <(run hour "'$BIN' stitch --channel '$CH' --start $hour_start --end $hour_end '$WORK/hour.wav'")
read -r _ day_s day_rss < <(run day "'$BIN' stitch --channel '$CH' --start 2026-01-01T00:00:00Z --end $day_end '$WORK/day.wav'")
read -r _ sox_s sox_rss < <(run sox "sox '$CH'/seg-*.wav '$WORK/sox-day.wav'")
rm -f "$WORK/hour.wav" "$WORK/day.wav" "$WORK/sox-day.wav"
awk -v hs="$hour_s" -v hr="$hour_rss" -v ds="$day_s" -v dr="$day_rss" -v ss="$sox_s" -v sr="$sox_rss" -v t="$total" -v h="$HOURS" 'BEGIN {
  printf "| figure | custodian | reference | ratio |\n|---|---|---|---|\n"
  printf "| stitch a 1 h call from a %d h channel (8 kHz mono, to WAV PCM16) | %.2f s (%.0f s of audio/s), %d KB peak | | |\n", h, hs, 3600 / hs, hr
  printf "| stitch the whole %d h channel (%d gaps as silence) | %.2f s (%.0f s of audio/s), %d KB peak | sox concatenating the segments (no gaps) %.2f s, %d KB | %.2fx sox'"'"'s time |\n", h, h - 1, ds, t / ds, dr, ss, sr, ds / ss
}'
