#!/usr/bin/env bash
# Builds the fuzz targets once with libFuzzer's coverage instrumentation and runs
# each for a bounded time; exits non-zero on any crash, naming the reproducer.
#
#   fuzz/run.sh                   every target, FUZZ_SECONDS (default 20) each
#   fuzz/run.sh kubeconfig_merge  only the targets named
#
# Stable Rust, no sanitizer: libfuzzer-sys (crates.io) builds libFuzzer with the
# C++ compiler, and rustc-wrapper.sh adds the SanitizerCoverage instrumentation
# cargo-fuzz would add, so nothing has to be installed besides the crates.
# Seeds come from corpus/<target>/ (committed, read only); what a run learns
# goes to target/corpus/<target>/ and crashes to target/artifacts/<target>/.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
seconds=${FUZZ_SECONDS:-20}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "FUZZ_SECONDS must be a positive number of seconds, got '$seconds'" >&2
    exit 2
fi
all=(create_options manager_config cluster_names port_volume_specs kubeconfig_rewrite kubeconfig_merge)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi
for t in "${targets[@]}"; do
    [[ " ${all[*]} " == *" $t "* ]] || { echo "unknown target '$t' (targets: ${all[*]})" >&2; exit 2; }
done

for tool in cargo rustc c++; do
    command -v "$tool" >/dev/null || {
        echo "fuzz/run.sh needs $tool (Rust via rustup; a C++ compiler such as g++ builds libFuzzer)" >&2
        exit 2
    }
done

host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR="$here/target"
# The SanitizerCoverage flags cargo-fuzz passes for `-s none` (its other flags
# need nightly), added by rustc-wrapper.sh to the crates the targets execute
# only. The explicit --target keeps `--cfg fuzzing` off build scripts and proc
# macros, which run on the host.
export KECS_FUZZ_SANCOV="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"
export KECS_FUZZ_INSTRUMENT="kecs_cluster serde_json serde_saphyr granit_parser ${all[*]}"
export RUSTC_WRAPPER="$here/rustc-wrapper.sh"
export RUSTFLAGS="--cfg fuzzing"
unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS
# full backtraces of a panic, beside libFuzzer's crash report
export RUST_BACKTRACE=1

start=$SECONDS
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --release --manifest-path "$here/Cargo.toml" --target "$host" "${bins[@]}"
echo "fuzz: built ${#targets[@]} targets in $((SECONDS - start))s"

# Runs one target; its output goes to its log, its exit status is libFuzzer's.
fuzz_one() {
    local t=$1
    local bin="$CARGO_TARGET_DIR/$host/release/$t"
    local work="$CARGO_TARGET_DIR/corpus/$t"
    local artifacts="$CARGO_TARGET_DIR/artifacts/$t"
    mkdir -p "$work" "$artifacts" "$here/corpus/$t"
    local args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
        -artifact_prefix="$artifacts/" -print_final_stats=1)
    [ -f "$here/dict/$t.dict" ] && args+=(-dict="$here/dict/$t.dict")
    # the scratch directory first: libFuzzer adds new inputs to the first one
    # only, so the committed seeds are never changed
    KECS_FUZZ_SCRATCH="$CARGO_TARGET_DIR/scratch/$t" \
        "$bin" "${args[@]}" "$work" "$here/corpus/$t" >"$CARGO_TARGET_DIR/logs/$t.log" 2>&1
}

# Prints how a target ended; returns non-zero when it crashed.
report() {
    local t=$1 status=$2
    local log="$CARGO_TARGET_DIR/logs/$t.log"
    if [ "$status" -eq 0 ]; then
        echo "fuzz: $t ok ($(grep -m1 -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" || echo 'done'))"
        return 0
    fi
    echo "fuzz: $t FAILED (exit $status); the end of its log ($log):" >&2
    tail -n 60 "$log" >&2
    local unit
    unit=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if [ -n "$unit" ]; then
        echo "fuzz: $t: reproducer $unit" >&2
        echo "fuzz: replay it with: $CARGO_TARGET_DIR/$host/release/$t $unit" >&2
    fi
    return 1
}

# FUZZ_JOBS targets at a time (default: one per CPU), each on its own core
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
if ! [[ $jobs =~ ^[1-9][0-9]*$ ]]; then
    echo "FUZZ_JOBS must be a positive number, got '$jobs'" >&2
    exit 2
fi
mkdir -p "$CARGO_TARGET_DIR/logs"
failed=()
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
    batch=("${targets[@]:i:jobs}")
    pids=()
    for t in "${batch[@]}"; do
        fuzz_one "$t" &
        pids+=($!)
    done
    for j in "${!batch[@]}"; do
        status=0
        wait "${pids[j]}" || status=$?
        report "${batch[j]}" "$status" || failed+=("${batch[j]}")
    done
done

echo "fuzz: finished in $((SECONDS - start))s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in: ${failed[*]}" >&2
    exit 1
fi
