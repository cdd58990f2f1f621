#!/usr/bin/env bash
# RUSTC_WRAPPER for run.sh: SanitizerCoverage only for the crates whose code the
# targets execute (the library, the targets, the JSON and YAML parsers). The
# rest of the tree (bollard, kube, k8s-openapi, tokio, rustls, ...) is linked
# in but never runs, and instrumenting it would only slow the build down.
rustc=$1
shift
crate=
target=
prev=
for arg in "$@"; do
    [ "$prev" = --crate-name ] && crate=$arg
    [ "$prev" = --target ] && target=$arg
    prev=$arg
done
# Host units (build scripts, proc macros, and serde_json once more for
# cbindgen) get no --target from cargo and are never instrumented: nothing
# links libFuzzer into them.
if [[ -n $crate && -n $target && " $KECS_FUZZ_INSTRUMENT " == *" $crate "* ]]; then
    # shellcheck disable=SC2086 # KECS_FUZZ_SANCOV is a list of flags
    exec "$rustc" "$@" $KECS_FUZZ_SANCOV
fi
exec "$rustc" "$@"
