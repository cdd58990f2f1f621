package kecscluster

import "errors"

// ErrCgoRequired is what NewClusterManager returns (wrapped, with how to build
// with cgo) in a binary built with CGO_ENABLED=0: the package then compiles, so
// a program that only sometimes needs clusters still builds, but it cannot reach
// the library, which is C code. It is declared in every build so that
// errors.Is(err, ErrCgoRequired) compiles with and without cgo.
var ErrCgoRequired = errors.New("kecscluster: the kecs-cluster library needs cgo")
