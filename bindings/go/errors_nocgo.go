//go:build !cgo

package kecscluster

// Status codes for builds without cgo, which cannot read the header: the same
// names as errors_cgo.go with the header's numbers, which TestCodesMatchHeader
// (errors_test.go, run in either build) checks against include/kecs_cluster.h.
const (
	CodeOK                Code = 0
	CodeInvalidArgument   Code = 1
	CodeNotFound          Code = 2
	CodeAlreadyExists     Code = 3
	CodeDockerUnavailable Code = 4
	CodeImageUnavailable  Code = 5
	CodeTimeout           Code = 6
	CodeCancelled         Code = 7
	CodeKubernetes        Code = 8
	CodeIO                Code = 9
	CodeInternal          Code = 10
	CodePanic             Code = 11
	CodeNodeFailed        Code = 12
)
