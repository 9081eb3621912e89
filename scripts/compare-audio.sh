#!/usr/bin/env bash
# Audio figures on this machine: custodian transcode against sox and ffmpeg, one process per
# file, two at a time (xargs -P2), warm page cache, each case timed by hyperfine (median).
#   (a) 200 x 60 s 8 kHz mono WAV -> WAV G.711 u-law      custodian vs sox vs ffmpeg; custodian
#       also as one process over all files (transcode --out-dir, 2 jobs)
#   (b) one 20-minute 8 kHz mono MP3 -> WAV PCM 16-bit     custodian vs sox
#   (c) 200 x 10 s 8 kHz mono MP3 -> WAV PCM 16-bit        custodian vs sox
#   (d) correctness: u-law and A-law data identical to sox; resampled SNR against sox
# and, for scale, the floor of starting 200 processes (`true`, two at a time).
#
#   scripts/compare-audio.sh [WORK_DIR]     env: FILES=200 RUNS=5
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(realpath -m "${1:-${TMPDIR:-/tmp}/custodian-compare-audio}")
FILES=${FILES:-200}
RUNS=${RUNS:-5}
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
for tool in sox ffmpeg lame hyperfine python3; do
  command -v "$tool" >/dev/null || {
    echo "compare-audio.sh needs $tool (apt-get install sox libsox-fmt-all ffmpeg lame hyperfine python3)" >&2
    exit 2
  }
done
cargo build --release --quiet --bin custodian
BIN=$CARGO_TARGET_DIR/release/custodian
mkdir -p "$WORK"
cd "$WORK"

# Inputs, made once: speech-band tones with a little noise, so codecs have something to do.
if [ ! -f wav/done ]; then
  rm -rf wav mp3 && mkdir -p wav mp3
  sox -n -r 8000 -c 1 -b 16 base60.wav synth 60 sine 300-3000 sine 440 whitenoise vol 0.3
  sox -n -r 8000 -c 1 -b 16 base10.wav synth 10 sine 300-3000 sine 440 whitenoise vol 0.3
  for i in $(seq -w 1 "$FILES"); do
    cp base60.wav "wav/call$i.wav"
  done
  lame --silent -b 32 -m m base10.wav base10.mp3
  for i in $(seq -w 1 "$FILES"); do
    cp base10.mp3 "mp3/call$i.mp3"
  done
  sox -n -r 8000 -c 1 -b 16 long.wav synth 1200 sine 300-3000 sine 440 whitenoise vol 0.3
  lame --silent -b 32 -m m long.wav long.mp3
  touch wav/done
fi
ls wav/*.wav > wav.list
ls mp3/*.mp3 > mp3.list

# Commands, each run on a fresh output directory (prepared outside the timing).
CUST_ULAW="xargs -P2 -I{} $BIN transcode --format wav-ulaw {} out/{} < wav.list"
CUST_ULAW_BATCH="$BIN transcode --format wav-ulaw --jobs 2 --out-dir out/wav \$(cat wav.list)"
SOX_ULAW="xargs -P2 -I{} sox -D {} -e u-law out/{} < wav.list"
FF_ULAW="xargs -P2 -I{} ffmpeg -nostdin -loglevel error -i {} -c:a pcm_mulaw out/{} < wav.list"
TRUE_200="xargs -P2 -I{} true {} < wav.list"
CUST_LONG="$BIN transcode --format wav-pcm16 long.mp3 out/long.wav"
SOX_LONG="sox long.mp3 out/long.wav"
CUST_MP3="xargs -P2 -I{} $BIN transcode --format wav-pcm16 {} out/{}.wav < mp3.list"
SOX_MP3="xargs -P2 -I{} sox {} out/{}.wav < mp3.list"
# sync: no run pays for writing back the dirty pages of the one before.
PREP="rm -rf out && mkdir -p out/wav out/mp3 && sync"

hyperfine --style none --warmup 1 --runs "$RUNS" --prepare "$PREP" --export-json times.json \
  -n custodian-ulaw "$CUST_ULAW" -n custodian-ulaw-batch "$CUST_ULAW_BATCH" \
  -n sox-ulaw "$SOX_ULAW" -n ffmpeg-ulaw "$FF_ULAW" \
  -n true-200 "$TRUE_200" \
  -n custodian-long "$CUST_LONG" -n sox-long "$SOX_LONG" \
  -n custodian-mp3 "$CUST_MP3" -n sox-mp3 "$SOX_MP3" >/dev/null

# (d) correctness against sox.
$BIN transcode --format wav-ulaw base60.wav ours-u.wav >/dev/null
$BIN transcode --format wav-alaw base60.wav ours-a.wav >/dev/null
sox -D base60.wav -e u-law sox-u.wav
sox -D base60.wav -e a-law sox-a.wav
same() { cmp -s "$1" "$2" && echo "identical" || echo "DIFFERENT"; }
ULAW_SAME=$(same ours-u.wav sox-u.wav)
rm -rf batch && $BIN transcode --format wav-ulaw --out-dir batch base60.wav >/dev/null
BATCH_SAME=$(same batch/base60.wav sox-u.wav)
ALAW_SAME=$(same ours-a.wav sox-a.wav)
sox -n -r 44100 -c 1 -b 16 tone44.wav synth 10 sine 440 sine 1000 vol 0.4
sox -n -r 8000 -c 1 -b 16 tone8.wav synth 10 sine 440 sine 1000 vol 0.4
$BIN transcode --format wav-pcm16 --rate 16000 tone8.wav ours-16k.wav >/dev/null
sox -D tone8.wav -r 16000 sox-16k.wav
$BIN transcode --format wav-pcm16 --rate 16000 base60.wav ours-16k-noise.wav >/dev/null
sox -D base60.wav -r 16000 sox-16k-noise.wav
$BIN transcode --format wav-pcm16 --rate 8000 tone44.wav ours-8k.wav >/dev/null
sox -D tone44.wav -r 8000 sox-8k.wav

python3 - "$FILES" "$ULAW_SAME" "$ALAW_SAME" "$BATCH_SAME" <<'PY'
import json, math, struct, sys
files, ulaw, alaw, batch = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
t = {r["command"]: r["median"] for r in json.load(open("times.json"))["results"]}

def pcm(path):
    b = open(path, "rb").read()
    at = 12
    while at + 8 <= len(b):
        n = struct.unpack_from("<I", b, at + 4)[0]
        if b[at:at + 4] == b"data":
            d = b[at + 8:at + 8 + n]
            return struct.unpack("<%dh" % (len(d) // 2), d)
        at += 8 + n + n % 2
    raise SystemExit(path + ": no data chunk")

def snr(ref, test):
    s = sum(x * x for x in ref)
    e = sum((x - y) ** 2 for x, y in zip(ref, test))
    return 10 * math.log10(s / max(e, 1e-30))

print("| case | custodian | sox | ffmpeg | custodian vs sox |")
print("|---|---|---|---|---|")
c, s, f = t["custodian-ulaw"], t["sox-ulaw"], t["ffmpeg-ulaw"]
print(f"| (a) {files} x 60 s 8 kHz WAV -> u-law, 2 at a time | {files / c:.0f} files/s ({c:.2f} s) "
      f"| {files / s:.0f} files/s ({s:.2f} s) | {files / f:.0f} files/s ({f:.2f} s) | {s / c:.2f}x |")
b = t["custodian-ulaw-batch"]
print(f"| (a) the same, custodian as one process (--out-dir, 2 jobs) | {files / b:.0f} files/s ({b:.2f} s) "
      f"| {files / s:.0f} files/s ({s:.2f} s) | {files / f:.0f} files/s ({f:.2f} s) | {s / b:.2f}x |")
c, s = t["custodian-long"], t["sox-long"]
print(f"| (b) 20 min MP3 -> WAV PCM16 | {c:.3f} s | {s:.3f} s | | {s / c:.2f}x |")
c, s = t["custodian-mp3"], t["sox-mp3"]
print(f"| (c) {files} x 10 s MP3 -> WAV PCM16, 2 at a time | {files / c:.0f} files/s ({c:.2f} s) "
      f"| {files / s:.0f} files/s ({s:.2f} s) | | {s / c:.2f}x |")
tr = t["true-200"]
print(f"| floor: {files} x `true`, 2 at a time | {files / tr:.0f} processes/s ({tr:.2f} s) | | | |")
print()
print("| correctness against sox | result |")
print("|---|---|")
print(f"| (d) u-law file, 60 s noise + sweep | {ulaw} |")
print(f"| (d) u-law file from --out-dir, 60 s noise + sweep | {batch} |")
print(f"| (d) A-law file, 60 s noise + sweep | {alaw} |")
print(f"| (d) 8 -> 16 kHz resample of tones, SNR vs sox | {snr(pcm('sox-16k.wav'), pcm('ours-16k.wav')):.1f} dB |")
print(f"| (d) 44.1 -> 8 kHz resample of tones, SNR vs sox | {snr(pcm('sox-8k.wav'), pcm('ours-8k.wav')):.1f} dB |")
print(f"| (d) 8 -> 16 kHz resample of full-band noise, SNR vs sox (filters differ near Nyquist) "
      f"| {snr(pcm('sox-16k-noise.wav'), pcm('ours-16k-noise.wav')):.1f} dB |")
PY
