#!/usr/bin/env bash
# Installs the kecs-cluster C library the way a system package would (what
# cargo-c's `cinstall` does, without compiling cargo-c):
#   PREFIX/include/kecs_cluster.h
#   LIBDIR/libkecs_cluster.a                 static archive, debug info stripped
#   LIBDIR/libkecs_cluster.so.ABI            shared library, soname libkecs_cluster.so.ABI
#   LIBDIR/libkecs_cluster.so -> .so.ABI     for -lkecs_cluster
#   LIBDIR/pkgconfig/kecs_cluster.pc
# ABI is KECS_ABI_VERSION from the header: the soname changes exactly when the C
# ABI does (the Go package checks the same number at init).
#
# Usage: scripts/install.sh [--prefix DIR] [--libdir DIR] [--no-build]
#   --prefix DIR   default /usr/local (then run ldconfig for the shared library)
#   --libdir DIR   default PREFIX/lib
#   --no-build     install what `cargo build --release` already built
# Artifacts come from ${CARGO_TARGET_DIR:-target}/release: the release profile
# is the distribution build (stripped; see [profile.release] in Cargo.toml).
# The CLI is not part of it: `cargo install --path .` installs that.
# Needs: cargo (unless --no-build), patchelf (apt-get install patchelf), binutils.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix=/usr/local
libdir=""
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --libdir) libdir="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "install.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done
libdir="${libdir:-$prefix/lib}"
case "$prefix$libdir" in
  /*) ;;
  *) echo "install.sh: --prefix and --libdir must be absolute paths (they are written into kecs_cluster.pc)" >&2; exit 2 ;;
esac
command -v patchelf >/dev/null || { echo "install.sh: needs patchelf to set the shared library's soname (apt-get install patchelf)" >&2; exit 1; }

if [ "$build" = 1 ]; then
  (cd "$root" && cargo build --release -p kecs-cluster --lib)
fi
artifacts="${CARGO_TARGET_DIR:-$root/target}/release"
header="$root/include/kecs_cluster.h"
for f in "$artifacts/libkecs_cluster.a" "$artifacts/libkecs_cluster.so"; do
  [ -f "$f" ] || { echo "install.sh: $f is missing: run cargo build --release first (or drop --no-build)" >&2; exit 1; }
done

version="$(sed -n 's/^#define KECS_VERSION "\(.*\)"$/\1/p' "$header")"
abi="$(sed -n 's/^#define KECS_ABI_VERSION \([0-9][0-9]*\)$/\1/p' "$header")"
[ -n "$version" ] && [ -n "$abi" ] || { echo "install.sh: cannot read KECS_VERSION / KECS_ABI_VERSION from $header" >&2; exit 1; }
soname="libkecs_cluster.so.$abi"

install -d "$prefix/include" "$libdir/pkgconfig"
install -m 0644 "$header" "$prefix/include/kecs_cluster.h"
# Rust does not strip a static archive (no linker runs); its objects still carry
# the standard library's debug info, which every program linking it would copy.
install -m 0644 "$artifacts/libkecs_cluster.a" "$libdir/libkecs_cluster.a"
strip --strip-debug "$libdir/libkecs_cluster.a"
# Install under a temporary name and rename, so a running program that mapped
# the previous copy keeps a valid file.
install -m 0755 "$artifacts/libkecs_cluster.so" "$libdir/.$soname.tmp"
patchelf --set-soname "$soname" "$libdir/.$soname.tmp"
mv -f "$libdir/.$soname.tmp" "$libdir/$soname"
ln -sfn "$soname" "$libdir/libkecs_cluster.so"
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$libdir|" -e "s|@INCLUDEDIR@|$prefix/include|" \
    -e "s|@VERSION@|$version|" "$root/kecs_cluster.pc.in" | grep -v '^#' > "$libdir/pkgconfig/kecs_cluster.pc"
echo "installed kecs-cluster $version (C ABI $abi) into $prefix; pkg-config: PKG_CONFIG_PATH=$libdir/pkgconfig"
