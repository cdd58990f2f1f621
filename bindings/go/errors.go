package kecscluster

import (
	"context"
	"fmt"
)

// Code is the library's status code (kecs_status_t); the numbers never change.
// The constants (CodeOK, CodeNotFound, ...) are the header's own values: with
// cgo they are read from include/kecs_cluster.h (errors_cgo.go); without cgo
// errors_nocgo.go spells them out and TestCodesMatchHeader checks both files
// against the header.
type Code int

var codeNames = map[Code]string{
	CodeOK: "ok", CodeInvalidArgument: "invalid argument", CodeNotFound: "not found",
	CodeAlreadyExists: "already exists", CodeDockerUnavailable: "docker unavailable",
	CodeImageUnavailable: "image unavailable", CodeTimeout: "timeout", CodeCancelled: "cancelled",
	CodeKubernetes: "kubernetes", CodeIO: "io", CodeInternal: "internal", CodePanic: "panic",
	CodeNodeFailed: "node failed",
}

func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("code(%d)", int(c))
}

// Error is every error this package returns. Match it with errors.Is against the
// Err* sentinels (and context.Canceled / context.DeadlineExceeded for calls whose
// context ended); never compare messages.
type Error struct {
	Code    Code
	Op      string // the method, e.g. "CreateCluster"
	Cluster string // the cluster name as given, if any
	Message string // the library's message: what failed, where, and what to do

	ctxErr error // the context's error when the call was cancelled through it
}

func (e *Error) Error() string {
	if e.Cluster != "" {
		return fmt.Sprintf("kecscluster: %s %q: %s", e.Op, e.Cluster, e.Message)
	}
	return fmt.Sprintf("kecscluster: %s: %s", e.Op, e.Message)
}

// Unwrap gives the context's error for calls cancelled through their context.
func (e *Error) Unwrap() error { return e.ctxErr }

// Is matches the sentinel of the error's code; a library timeout also matches
// context.DeadlineExceeded, and a panic caught in the library matches ErrInternal.
func (e *Error) Is(target error) bool {
	if s, ok := target.(*sentinel); ok {
		return s.code == e.Code || (s.code == CodeInternal && e.Code == CodePanic)
	}
	if target == context.DeadlineExceeded && e.Code == CodeTimeout {
		return true
	}
	return false
}

type sentinel struct {
	code Code
}

func (s *sentinel) Error() string { return "kecscluster: " + s.code.String() }

// Sentinels for errors.Is.
var (
	ErrInvalidArgument   error = &sentinel{CodeInvalidArgument}
	ErrNotFound          error = &sentinel{CodeNotFound}
	ErrAlreadyExists     error = &sentinel{CodeAlreadyExists}
	ErrDockerUnavailable error = &sentinel{CodeDockerUnavailable}
	ErrImageUnavailable  error = &sentinel{CodeImageUnavailable}
	ErrTimeout           error = &sentinel{CodeTimeout}
	ErrCancelled         error = &sentinel{CodeCancelled}
	ErrKubernetes        error = &sentinel{CodeKubernetes}
	ErrIO                error = &sentinel{CodeIO}
	ErrInternal          error = &sentinel{CodeInternal}
	// ErrNodeFailed: a node container exited (or was stopped) before it became
	// ready, or a command the library runs inside a node failed; the message
	// names the node and the step.
	ErrNodeFailed error = &sentinel{CodeNodeFailed}
)
