#!/usr/bin/env bash
# Runs each fuzz target of fuzz/ for a bounded time, one after the other at the lowest CPU
# priority, and says what each found.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]    (default: 60 seconds each, every target)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP=1 lets a stable toolchain take
# its sanitizer flags. The checked-in seeds in fuzz/corpus/<target> are only read: what a run
# learns goes to fuzz/scratch/<target>, crashing inputs to fuzz/artifacts/<target>. Exits 1
# when a target crashed, leaked or timed out.
set -euo pipefail

seconds=${1:-60}
shift || true
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
fi
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

nice -n 19 cargo fuzz build

found=0
for target in "${targets[@]}"; do
    mkdir -p "scratch/$target"
    log="scratch/$target.log"
    # -timeout: one input taking longer is a hang and counts as found.
    if nice -n 19 cargo fuzz run "$target" "scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
        echo "$target: nothing found in ${seconds}s ($runs runs, $cov)"
    else
        found=1
        artifact=$(grep -o 'Test unit written to [^ ]*' "$log" | sed 's/Test unit written to //' || true)
        reason=$(grep -m1 -E '^==[0-9]+==ERROR|panicked at|^SUMMARY' "$log" || true)
        echo "$target: FOUND ${reason:-a failure (see $log)}"
        [ -n "$artifact" ] && echo "  input: $artifact (replay: cargo fuzz run $target $artifact)"
        echo "  log: fuzz/$log"
    fi
done
exit "$found"
