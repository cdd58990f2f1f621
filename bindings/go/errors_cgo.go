//go:build cgo

package kecscluster

// #include "kecs_cluster.h"
import "C"

// Status codes: the values of kecs_status_t in include/kecs_cluster.h, taken
// from the header by cgo rather than copied.
const (
	CodeOK                Code = C.KECS_STATUS_OK
	CodeInvalidArgument   Code = C.KECS_STATUS_INVALID_ARGUMENT
	CodeNotFound          Code = C.KECS_STATUS_NOT_FOUND
	CodeAlreadyExists     Code = C.KECS_STATUS_ALREADY_EXISTS
	CodeDockerUnavailable Code = C.KECS_STATUS_DOCKER_UNAVAILABLE
	CodeImageUnavailable  Code = C.KECS_STATUS_IMAGE_UNAVAILABLE
	CodeTimeout           Code = C.KECS_STATUS_TIMEOUT
	CodeCancelled         Code = C.KECS_STATUS_CANCELLED
	CodeKubernetes        Code = C.KECS_STATUS_KUBERNETES
	CodeIO                Code = C.KECS_STATUS_IO
	CodeInternal          Code = C.KECS_STATUS_INTERNAL
	CodePanic             Code = C.KECS_STATUS_PANIC
	CodeNodeFailed        Code = C.KECS_STATUS_NODE_FAILED
)
