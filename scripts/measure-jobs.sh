#!/usr/bin/env bash
# Figures of unattended jobs on this machine:
#   confidential: confidential-flag runs over a SQLite catalog of CONVERSATIONS conversations
#     (built by examples/lifecycle_scale.rs): full mode changing about half, full mode changing
#     nothing, incremental mode over everything, its rerun, and clearing every flag.
#     Conversations per second (processed / wall time) and peak RSS.
#   serve-idle: `custodian serve` with IDLE_POLICIES scheduled policies, none due in the
#     window: CPU time and memory over IDLE_SECONDS.
#   serve-latency: LATENCY_POLICIES policies due every minute (empty repository) for
#     LATENCY_MINUTES minutes: time from the due instant to the run process's start, and to
#     the run's row in the catalog (process start, config, catalog, index).
#
#   direct: `custodian direct` (interval DIRECT_INTERVAL) while a recorder writes DIRECT_RATE
#     conversations a second for DIRECT_SECONDS (a 60 s 8 kHz WAV and conversation.json each,
#     the record renamed into place last): latency from completion to export, from its summary.
#
#   scripts/measure-jobs.sh WORK_DIR    env: SECTIONS="confidential serve-idle serve-latency direct"
#     CONVERSATIONS=1000000 IDLE_POLICIES=1000 IDLE_SECONDS=60 LATENCY_POLICIES=5 LATENCY_MINUTES=3
#     DIRECT_RATE=20 DIRECT_SECONDS=60 DIRECT_INTERVAL=250ms
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: scripts/measure-jobs.sh WORK_DIR}
SECTIONS=${SECTIONS:-confidential serve-idle serve-latency direct}
DIRECT_RATE=${DIRECT_RATE:-20}
DIRECT_SECONDS=${DIRECT_SECONDS:-60}
DIRECT_INTERVAL=${DIRECT_INTERVAL:-250ms}
CONVERSATIONS=${CONVERSATIONS:-1000000}
IDLE_POLICIES=${IDLE_POLICIES:-1000}
IDLE_SECONDS=${IDLE_SECONDS:-60}
LATENCY_POLICIES=${LATENCY_POLICIES:-5}
LATENCY_MINUTES=${LATENCY_MINUTES:-3}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
command -v /usr/bin/time >/dev/null || { echo "measure-jobs.sh needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --quiet --bin custodian --example lifecycle_scale
BIN=$CARGO_TARGET_DIR/release/custodian
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
export TZ=UTC

if want confidential; then
  dir=$WORK/confidential
  rm -rf "$dir" && mkdir -p "$dir/repo"
  "$CARGO_TARGET_DIR/release/examples/lifecycle_scale" "$dir/catalog.db" --conversations "$CONVERSATIONS" >/dev/null
  cat > "$dir/custodian.toml" <<TOML
[catalog]
url = "sqlite:catalog.db"
[repository]
root = "repo"
[policies.older]
action = "confidential"
flag = "set"
mode = "full"
[policies.older.filter]
older_than_days = 365
[policies.everything]
action = "confidential"
flag = "set"
mode = "incremental"
[policies.clear]
action = "confidential"
flag = "clear"
mode = "full"
TOML
  echo "| confidential-flag run over $CONVERSATIONS conversations | processed | changed | seconds | conversations/s | peak RSS |"
  echo "|---|---|---|---|---|---|"
  for step in "older:full, sets about half" "older:full again, nothing to change" \
              "everything:incremental, first run" "everything:incremental, rerun" \
              "clear:full, clears every flag"; do
    policy=${step%%:*}
    /usr/bin/time -f "%M" -o "$dir/rss" "$BIN" --config "$dir/custodian.toml" --json run "$policy" --no-index > "$dir/out.json"
    python3 - "$dir/out.json" "$dir/rss" "${step#*:}" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
rss = int(open(sys.argv[2]).read().split()[-1]) // 1024
rate = s["processed"] / s["seconds"] if s["seconds"] else 0
print(f"| {sys.argv[3]} | {s['processed']:,} | {s['counters']['flagged']:,} | {s['seconds']:.2f} | {rate:,.0f} | {rss} MB |")
PY
  done
  "$BIN" --config "$dir/custodian.toml" audit verify
fi

# Prints a config with a filesystem target and an empty repository under $1, and N policies.
serve_config() {
  local dir=$1 n=$2 schedule=$3
  mkdir -p "$dir/repo" "$dir/archive"
  printf '[catalog]\nurl = "sqlite:catalog.db"\n[repository]\nroot = "repo"\n[targets.archive]\nkind = "filesystem"\npath = "archive"\n' > "$dir/custodian.toml"
  for i in $(seq 1 "$n"); do
    printf '[policies.p%04d]\naction = "export"\ntarget = "archive"\nschedule = "%s"\ntimezone = "UTC"\n' "$i" "$($schedule "$i")" >> "$dir/custodian.toml"
  done
}

# Daily schedules spread over the day, none in the next half hour.
daily_later() {
  local m=$(( ( $(date +%H) * 60 + $(date +%M) + 30 + $1 % 1380 ) % 1440 ))
  printf 'daily at %02d:%02d' $((m / 60)) $((m % 60))
}
every_minute() { echo "cron * * * * *"; }

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

if want serve-idle; then
  dir=$WORK/serve-idle
  rm -rf "$dir" && mkdir -p "$dir"
  serve_config "$dir" "$IDLE_POLICIES" daily_later
  started=$(date +%s.%N)
  "$BIN" --config "$dir/custodian.toml" serve 2> "$dir/serve.log" &
  pid=$!
  until grep -q "serving" "$dir/serve.log" 2>/dev/null; do sleep 0.01; done
  ready=$(date +%s.%N)
  sleep 2
  t0=$(ticks $pid)
  sleep "$IDLE_SECONDS"
  t1=$(ticks $pid)
  rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  hwm=$(awk '/VmHWM/{print $2}' /proc/$pid/status)
  threads=$(awk '/Threads/{print $2}' /proc/$pid/status)
  kill -TERM $pid && wait $pid
  hz=$(getconf CLK_TCK)
  echo
  echo "| serve with $IDLE_POLICIES scheduled policies | value |"
  echo "|---|---|"
  python3 -c "print(f'| start-up (config parsed, catalog opened, schedules computed) | {($ready - $started) * 1000:.0f} ms |')"
  python3 -c "print(f'| CPU over {$IDLE_SECONDS} s idle | {($t1 - $t0) / $hz * 1000:.0f} ms ({($t1 - $t0) / $hz / $IDLE_SECONDS * 100:.3f}% of a core) |')"
  echo "| memory | ${rss} kB resident, ${hwm} kB peak, ${threads} threads |"
fi

if want serve-latency; then
  dir=$WORK/serve-latency
  rm -rf "$dir" && mkdir -p "$dir"
  serve_config "$dir" "$LATENCY_POLICIES" every_minute
  "$BIN" --config "$dir/custodian.toml" serve --max-concurrent "$LATENCY_POLICIES" 2> "$dir/serve.log" &
  pid=$!
  # Start just after a minute boundary, then stay for LATENCY_MINUTES boundaries.
  sleep $(( 60 - $(date +%S | sed 's/^0//') + 60 * LATENCY_MINUTES - 30 ))
  kill -TERM $pid && wait $pid
  "$BIN" --config "$dir/custodian.toml" --json jobs list --limit 100000 > "$dir/runs.json"
  python3 - "$dir/serve.log" "$dir/runs.json" <<'PY'
import json, re, statistics, sys
from datetime import datetime
spawn = [float(m) for m in re.findall(r"latency_ms=([0-9.]+)", open(sys.argv[1]).read())]
rows = []
for r in json.load(open(sys.argv[2])):
    t = datetime.fromisoformat(r["started_at"].replace("Z", "+00:00"))
    rows.append((t.second * 1000 + t.microsecond / 1000))
def line(name, xs):
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
    print(f"| {name} | {len(xs)} | {statistics.median(xs):.1f} ms | {p99:.1f} ms | {xs[-1]:.1f} ms |")
print()
print("| due instant to … | runs | median | p99 | max |")
print("|---|---|---|---|---|")
line("run process started", spawn)
line("run row begun in the catalog", rows)
PY
fi

if want direct; then
  dir=$WORK/direct
  rm -rf "$dir" && mkdir -p "$dir/repo" "$dir/archive"
  printf '[catalog]\nurl = "sqlite:catalog.db"\n[repository]\nroot = "repo"\n[targets.archive]\nkind = "filesystem"\npath = "archive"\n[policies.direct]\naction = "export"\ntarget = "archive"\n' > "$dir/custodian.toml"
  "$BIN" --config "$dir/custodian.toml" --json direct direct --interval "$DIRECT_INTERVAL" > "$dir/summary.json" 2> "$dir/direct.log" &
  pid=$!
  sleep 1
  python3 - "$dir/repo" "$DIRECT_RATE" "$DIRECT_SECONDS" <<'PY'
import hashlib, json, os, sys, time
root, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
wav = b"RIFF" + (36 + 960000).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little") \
    + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little") \
    + (16000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little") \
    + b"data" + (960000).to_bytes(4, "little") + bytes(960000)
sha = hashlib.sha256(wav).hexdigest()
start = time.time()
n = 0
while time.time() - start < seconds:
    d = os.path.join(root, "acme/2026/11/22", f"c{n:06d}")
    os.makedirs(d)
    with open(os.path.join(d, "a.wav"), "wb") as f:
        f.write(wav)
    record = {"schema": 1, "id": f"c{n:06d}", "tenant": "acme", "type": "voice",
              "source_platform": "cisco", "direction": "inbound",
              "start": "2026-11-22T10:00:00Z", "end": "2026-11-22T10:01:00Z",
              "participants": [{"user": "alice", "role": "agent"}],
              "artifacts": [{"file": "a.wav", "type": "audio_recording",
                             "audio_type": "conference_agent", "size": len(wav), "sha256": sha}]}
    with open(os.path.join(d, ".conversation.json.tmp"), "w") as f:
        json.dump(record, f)
    os.rename(os.path.join(d, ".conversation.json.tmp"), os.path.join(d, "conversation.json"))
    n += 1
    time.sleep(max(0.0, start + n / rate - time.time()))
print(f"wrote {n} conversations", file=sys.stderr)
PY
  sleep 3
  kill -TERM $pid && wait $pid
  python3 - "$dir/summary.json" "$DIRECT_RATE" "$DIRECT_INTERVAL" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print()
print(f"| direct export, {sys.argv[2]} conversations/s arriving, --interval {sys.argv[3]} | value |")
print("|---|---|")
print(f"| exported | {s['exported']} in {s['runs']} runs, {s['failed']} failed |")
print(f"| completion to export (manifest written) | median {s['latency_median_ms']:.0f} ms, p99 {s['latency_p99_ms']:.0f} ms over {s['measured']} |")
PY
fi
