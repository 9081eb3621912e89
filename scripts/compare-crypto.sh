#!/usr/bin/env bash
# custodian decrypt against cp of the same encrypted file, side by side: a random plaintext of
# SIZE_MB megabytes (10^6 bytes) is encrypted by custodian in 1 MiB chunks, the page cache is
# warmed, and hyperfine times `cp` of the encrypted file and `custodian decrypt` of it (each
# run writes a fresh output, removed before the run). `openssl enc` has no streaming GCM mode,
# so it is not a reference here. Prints a markdown row with the medians and the ratio.
#
#   scripts/compare-crypto.sh WORK_DIR     env: SIZE_MB=1000 RUNS=10
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: scripts/compare-crypto.sh WORK_DIR}
SIZE_MB=${SIZE_MB:-1000}
RUNS=${RUNS:-10}
for tool in hyperfine jq; do
  command -v "$tool" >/dev/null || { echo "compare-crypto.sh needs $tool (apt-get install $tool)" >&2; exit 2; }
done
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --quiet --bin custodian
BIN=$CARGO_TARGET_DIR/release/custodian
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
KS=$WORK/keys.json
PLAIN=$WORK/plain-${SIZE_MB}MB.bin
ENC=$WORK/plain-${SIZE_MB}MB.enc

if [ ! -f "$KS" ]; then
  (umask 077 && printf '{"keys":{"compare":"%s"}}\n' "$(head -c 32 /dev/urandom | base64)" >"$KS")
fi
[ -f "$PLAIN" ] || head -c $((SIZE_MB * 1000000)) /dev/urandom >"$PLAIN"
"$BIN" encrypt --keystore "$KS" --key-id compare "$PLAIN" "$ENC" >&2

echo "warming the page cache" >&2
cat "$ENC" "$PLAIN" >/dev/null
hyperfine --style basic --warmup 2 --runs "$RUNS" --export-json "$WORK/hyperfine.json" \
  --prepare "rm -f '$WORK/out-cp' '$WORK/out-decrypt'" \
  -n cp "cp '$ENC' '$WORK/out-cp'" \
  -n "custodian decrypt" "'$BIN' decrypt --keystore '$KS' '$ENC' '$WORK/out-decrypt'" >&2
cmp "$PLAIN" "$WORK/out-decrypt" || { echo "decrypted output differs from the plaintext" >&2; exit 1; }
rm -f "$WORK/out-cp" "$WORK/out-decrypt"

median() { jq -r --arg n "$1" '.results[] | select(.command == $n) | .median' "$WORK/hyperfine.json"; }
cp_s=$(median cp)
dec_s=$(median "custodian decrypt")
awk -v d="$dec_s" -v c="$cp_s" -v mb="$SIZE_MB" 'BEGIN {
  printf "| figure | custodian | reference | ratio |\n|---|---|---|---|\n"
  printf "| decrypt %d MB (1 MiB chunks), warm cache | custodian decrypt %.3f s (%.0f MB/s) | cp of the encrypted file %.3f s | %.2fx cp'"'"'s time |\n", mb, d, mb / d, c, d / c
}'
