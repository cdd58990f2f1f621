package kecscluster

// Linking: by default the static library from `cargo build --release` at the
// repository root, so Go binaries need no shared library at run time. Build with
// `-tags kecs_dynamic` to link libkecs_cluster.so instead (an rpath to
// target/release is embedded; set LD_LIBRARY_PATH when moving the binary).

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo !kecs_dynamic LDFLAGS: ${SRCDIR}/../../target/release/libkecs_cluster.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
#cgo kecs_dynamic LDFLAGS: -L${SRCDIR}/../../target/release -lkecs_cluster -Wl,-rpath,${SRCDIR}/../../target/release
#include "kecs_cluster.h"
*/
import "C"
