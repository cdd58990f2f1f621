// Package kecscluster creates, deletes and inspects local Kubernetes clusters
// inside Docker — k3s nodes the way k3d makes them (provider "k3d", the
// default) or Kubernetes nodes the way kind makes them (provider "kind") —
// through the kecs-cluster C library. No Docker CLI, k3d or kind binary is
// involved: the library talks to the Docker Engine API and the cluster's
// Kubernetes API itself.
//
// # Building
//
// The package uses cgo and links the kecs-cluster C library: inside the
// kecs-cluster repository after `cargo build --release`, elsewhere after the
// repository's scripts/install.sh (see the README). The static library is
// linked by default, so binaries need no shared library at run time;
// `-tags kecs_dynamic` links libkecs_cluster.so instead. With CGO_ENABLED=0 the
// package still compiles and NewClusterManager returns an error matching
// ErrCgoRequired.
//
// # Configuration
//
// NewClusterManager(nil) takes everything from the environment and the
// defaults, as KECS does; a Config field that is set wins over the
// environment (see Config for the variables). Nothing talks to Docker until
// the first call that needs it.
//
// # Calls, cancellation and errors
//
// Every call that reaches Docker takes a context.Context: cancelling it (or its
// deadline passing) stops the call, and a cancelled create removes everything
// it made, exactly as a failed one does. Errors are *Error values carrying the
// library's Code; match them with errors.Is against the sentinels
// (ErrNotFound, ErrImageUnavailable, ErrDockerUnavailable, ErrTimeout, ...).
// A cancelled call also matches the context's error (context.Canceled or
// context.DeadlineExceeded).
//
// A Manager is safe for concurrent use by several goroutines. Close cancels
// the calls in flight, waits for them and their rollbacks, then releases it.
//
// Package k3dcompat (bindings/go/k3dcompat) offers the method set of KECS's
// *K3dClusterManager on top of Manager.
package kecscluster
