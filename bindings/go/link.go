package kecscluster

// Linking. The library is looked up first in this repository (target/release,
// after `cargo build --release` at the root: the development path), then where
// the C toolchain looks by default or CGO_CFLAGS/CGO_LDFLAGS point (after
// scripts/install.sh: the path for programs in other modules, whose copy of this
// package in the module cache has no Rust build next to it). A -I or -L
// directory that does not exist is skipped by the compiler and the linker, so
// the same directives serve both.
//
// By default the static library is linked (`-l:libkecs_cluster.a` names the
// archive, never the .so beside it), so Go binaries need no shared library at
// run time. libgcc_s is deliberately not named: gcc adds the unwinder itself —
// libgcc_s for a normal link, libgcc_eh for `-extldflags -static`, which a fully
// static binary needs (naming libgcc_s made `-static` fail).
//
// `-tags kecs_dynamic` links libkecs_cluster.so instead; an rpath to
// target/release is embedded for the in-repository build, an installed library
// is found through the loader's usual paths (ldconfig, LD_LIBRARY_PATH).
//
// Without cgo none of this is compiled: see nocgo.go.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo !kecs_dynamic LDFLAGS: -L${SRCDIR}/../../target/release -l:libkecs_cluster.a -lutil -lrt -lpthread -lm -ldl -lc
#cgo kecs_dynamic LDFLAGS: -L${SRCDIR}/../../target/release -lkecs_cluster -Wl,-rpath,${SRCDIR}/../../target/release
#include "kecs_cluster.h"
*/
import "C"
