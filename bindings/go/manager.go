package kecscluster

/*
#include <stdlib.h>
#include "kecs_cluster.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// DefaultWaitTimeout bounds WaitForClusterReadyContext when ctx has no deadline.
const DefaultWaitTimeout = 2 * time.Minute

// ClusterManager is the interface KECS's control plane calls (without
// GetKubeClient, which needs client-go: build it from GetKubeconfig).
type ClusterManager interface {
	CreateCluster(ctx context.Context, clusterName string) error
	DeleteCluster(ctx context.Context, clusterName string) error
	ClusterExists(ctx context.Context, clusterName string) (bool, error)
	WaitForClusterReady(clusterName string, timeout time.Duration) error
	GetKubeconfigPath(clusterName string) string
	GetClusterInfo(ctx context.Context, clusterName string) (*ClusterInfo, error)
}

var _ ClusterManager = (*Manager)(nil)

// Manager manages clusters through the kecs-cluster library. It is safe for
// concurrent use; Close cancels the calls in flight and releases it.
type Manager struct {
	mu  sync.RWMutex // calls hold it shared; Close holds it exclusively
	ptr *C.kecs_manager_t
	// closing ends when Close begins: it cancels every call in flight, and
	// calls made from then on fail at once instead of queueing behind Close.
	closing    context.Context
	startClose context.CancelFunc
}

// abiError is set at init when the library does not implement the ABI this
// package was compiled against.
var abiError error

func init() {
	if got, want := uint32(C.kecs_abi_version()), uint32(C.KECS_ABI_VERSION); got != want {
		abiError = fmt.Errorf("kecscluster: the linked library implements ABI %d (version %s) but this package was built against ABI %d (header version %s): rebuild the library and the Go package from the same checkout",
			got, C.GoString(C.kecs_version()), want, C.KECS_VERSION)
	}
}

// Version is the library's version, e.g. "0.1.0".
func Version() string { return C.GoString(C.kecs_version()) }

// NewClusterManager creates a Manager. A nil cfg means defaults plus the
// environment, as in KECS. No Docker call is made until the first operation.
func NewClusterManager(cfg *Config) (*Manager, error) {
	if abiError != nil {
		return nil, abiError
	}
	if cfg == nil {
		cfg = &Config{}
	}
	doc, err := json.Marshal(cfg)
	if err != nil {
		return nil, &Error{Code: CodeInvalidArgument, Op: "NewClusterManager", Message: err.Error()}
	}
	cdoc := C.CString(string(doc))
	defer C.free(unsafe.Pointer(cdoc))
	var ptr *C.kecs_manager_t
	var cerr *C.kecs_error_t
	if st := C.kecs_manager_new(cdoc, &ptr, &cerr); st != C.KECS_STATUS_OK {
		return nil, takeError(st, cerr, "NewClusterManager", "", nil)
	}
	closing, startClose := context.WithCancel(context.Background())
	m := &Manager{ptr: ptr, closing: closing, startClose: startClose}
	// a safety net only: callers should Close explicitly
	runtime.SetFinalizer(m, func(m *Manager) { _ = m.Close() })
	return m, nil
}

// Close releases the manager. Calls in flight are cancelled (they return an
// error matching ErrCancelled; a CreateCluster first removes what it made) and
// Close returns once they have returned and every rollback has finished — one
// waiting for a Docker Engine that does not answer included, up to the
// library's request timeout (120 s). Calls made once Close has begun fail with
// ErrInvalidArgument ("the manager is closed"). Idempotent and safe to call
// from several goroutines.
func (m *Manager) Close() error {
	if m.startClose != nil {
		m.startClose()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ptr != nil {
		// kecs_manager_free cancels the library's background work (a create
		// whose caller was answered while its rollback waits for the engine)
		// and waits for it before freeing
		C.kecs_manager_free(m.ptr)
		m.ptr = nil
		runtime.SetFinalizer(m, nil)
	}
	return nil
}

// closed reports whether Close has begun.
func (m *Manager) closed() bool {
	return m.closing != nil && m.closing.Err() != nil
}

// takeError converts and frees a library error.
func takeError(st C.kecs_status_t, cerr *C.kecs_error_t, op, cluster string, ctx context.Context) error {
	e := &Error{Code: Code(st), Op: op, Cluster: cluster}
	if cerr != nil {
		e.Message = C.GoString(C.kecs_error_message(cerr))
		C.kecs_error_free(cerr)
	}
	if e.Code == CodeCancelled && ctx != nil && ctx.Err() != nil {
		e.ctxErr = ctx.Err()
	}
	return e
}

// cfunc is one C call: it receives the manager, a cancellation token and the
// error out-parameter.
type cfunc func(m *C.kecs_manager_t, cancel *C.kecs_cancel_t, cerr **C.kecs_error_t) C.kecs_status_t

// call runs f with ctx mapped onto a library cancellation token: when ctx ends,
// context.AfterFunc triggers the token; the token is freed only once that
// trigger can no longer run.
func (m *Manager) call(ctx context.Context, op, cluster string, f cfunc) error {
	if err := ctx.Err(); err != nil {
		return &Error{Code: CodeCancelled, Op: op, Cluster: cluster, Message: err.Error(), ctxErr: err}
	}
	closedErr := &Error{Code: CodeInvalidArgument, Op: op, Cluster: cluster, Message: "the manager is closed"}
	if m.closed() { // do not queue behind a Close that is cancelling calls
		return closedErr
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.ptr == nil {
		return closedErr
	}
	token := C.kecs_cancel_new()
	if token == nil { // allocation failed: never run a call that could not be cancelled
		return &Error{Code: CodeInternal, Op: op, Cluster: cluster, Message: "could not allocate a cancellation token"}
	}
	// the call ends with ctx or when Close begins, whichever comes first
	callCtx, endCall := context.WithCancel(ctx)
	defer endCall()
	if m.closing != nil {
		defer context.AfterFunc(m.closing, endCall)()
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(callCtx, func() {
		defer close(fired)
		C.kecs_cancel_trigger(token)
	})
	var cerr *C.kecs_error_t
	st := f(m.ptr, token, &cerr)
	if !stop() {
		<-fired // the trigger started: let it finish before the token is freed
	}
	C.kecs_cancel_free(token)
	runtime.KeepAlive(m)
	if st != C.KECS_STATUS_OK {
		err := takeError(st, cerr, op, cluster, ctx)
		if e, ok := err.(*Error); ok && e.Code == CodeCancelled && ctx.Err() == nil && m.closed() {
			e.Message += " (Close cancelled the call)"
		}
		return err
	}
	return nil
}

func cstring(s string) (*C.char, func()) {
	cs := C.CString(s)
	return cs, func() { C.free(unsafe.Pointer(cs)) }
}

// CreateCluster creates a cluster with the default options and waits until it
// is ready. An existing cluster is not an error. Cancelling ctx stops the create
// within about a second and removes everything it made.
func (m *Manager) CreateCluster(ctx context.Context, name string) error {
	return m.CreateClusterWithOptions(ctx, name, nil)
}

// CreateClusterWithOptions is CreateCluster with options (nil = defaults).
func (m *Manager) CreateClusterWithOptions(ctx context.Context, name string, opts *CreateOptions) error {
	var copts *C.char
	if opts != nil {
		doc, err := json.Marshal(opts)
		if err != nil {
			return &Error{Code: CodeInvalidArgument, Op: "CreateCluster", Cluster: name, Message: err.Error()}
		}
		var free func()
		copts, free = cstring(string(doc))
		defer free()
	}
	cname, free := cstring(name)
	defer free()
	return m.call(ctx, "CreateCluster", name, func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_cluster_create(p, cname, copts, tok, e)
	})
}

// DeleteCluster deletes a cluster and the kubeconfig files this library wrote
// for it (never ~/.kube/config). A missing cluster is not an error.
func (m *Manager) DeleteCluster(ctx context.Context, name string) error {
	cname, free := cstring(name)
	defer free()
	return m.call(ctx, "DeleteCluster", name, func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_cluster_delete(p, cname, tok, e)
	})
}

// ClusterExists reports whether the cluster exists.
func (m *Manager) ClusterExists(ctx context.Context, name string) (bool, error) {
	cname, free := cstring(name)
	defer free()
	var out C.bool
	err := m.call(ctx, "ClusterExists", name, func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_cluster_exists(p, cname, tok, &out, e)
	})
	return bool(out), err
}

// WaitForClusterReady waits at most timeout for an existing cluster's nodes to
// be ready (KECS's signature; prefer WaitForClusterReadyContext).
func (m *Manager) WaitForClusterReady(name string, timeout time.Duration) error {
	return m.wait(context.Background(), name, timeout)
}

// WaitForClusterReadyContext waits until ctx ends (or DefaultWaitTimeout when
// ctx has no deadline) for an existing cluster's nodes to be ready.
func (m *Manager) WaitForClusterReadyContext(ctx context.Context, name string) error {
	timeout := DefaultWaitTimeout
	if d, ok := ctx.Deadline(); ok {
		// a little beyond the deadline, so that ctx ending is what stops the wait
		timeout = time.Until(d) + time.Second
	}
	return m.wait(ctx, name, timeout)
}

func (m *Manager) wait(ctx context.Context, name string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = time.Millisecond
	}
	cname, free := cstring(name)
	defer free()
	ms := C.uint64_t(timeout.Milliseconds())
	return m.call(ctx, "WaitForClusterReady", name, func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_cluster_wait_ready(p, cname, ms, tok, e)
	})
}

// GetKubeconfigPath is where the cluster's kubeconfig file is written
// (<KubeconfigPath>/<name>.config); "" for an invalid name or a closed manager.
func (m *Manager) GetKubeconfigPath(name string) string {
	cname, free := cstring(name)
	defer free()
	var out *C.char
	err := m.call(context.Background(), "GetKubeconfigPath", name, func(p *C.kecs_manager_t, _ *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_cluster_kubeconfig_path(p, cname, &out, e)
	})
	if err != nil {
		return ""
	}
	defer C.kecs_string_free(out)
	return C.GoString(out)
}

// GetKubeconfig returns the cluster's kubeconfig (YAML): the host URL, or the
// in-network URL in container mode. Build a client-go client with
// clientcmd.RESTConfigFromKubeConfig(yaml).
func (m *Manager) GetKubeconfig(ctx context.Context, name string) ([]byte, error) {
	cname, free := cstring(name)
	defer free()
	var out *C.char
	err := m.call(ctx, "GetKubeconfig", name, func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_cluster_kubeconfig(p, cname, tok, &out, e)
	})
	if err != nil {
		return nil, err
	}
	defer C.kecs_string_free(out)
	return []byte(C.GoString(out)), nil
}

// GetClusterInfo describes one cluster; ErrNotFound when it does not exist.
func (m *Manager) GetClusterInfo(ctx context.Context, name string) (*ClusterInfo, error) {
	cname, free := cstring(name)
	defer free()
	var out *C.char
	err := m.call(ctx, "GetClusterInfo", name, func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_cluster_info(p, cname, tok, &out, e)
	})
	if err != nil {
		return nil, err
	}
	defer C.kecs_string_free(out)
	var info ClusterInfo
	if err := json.Unmarshal([]byte(C.GoString(out)), &info); err != nil {
		return nil, &Error{Code: CodeInternal, Op: "GetClusterInfo", Cluster: name, Message: "decoding the library's answer: " + err.Error()}
	}
	return &info, nil
}

// ListClusters lists the clusters whose names carry the configured prefix.
func (m *Manager) ListClusters(ctx context.Context) ([]ClusterInfo, error) {
	var out *C.char
	err := m.call(ctx, "ListClusters", "", func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_cluster_list(p, tok, &out, e)
	})
	if err != nil {
		return nil, err
	}
	defer C.kecs_string_free(out)
	var list []ClusterInfo
	if err := json.Unmarshal([]byte(C.GoString(out)), &list); err != nil {
		return nil, &Error{Code: CodeInternal, Op: "ListClusters", Message: "decoding the library's answer: " + err.Error()}
	}
	return list, nil
}

// StopCluster stops every container of the cluster; its containers, volumes,
// host ports and kubeconfig stay, so StartCluster brings it back as it was.
// Stopping a stopped cluster is not an error; a missing one is ErrNotFound.
func (m *Manager) StopCluster(ctx context.Context, name string) error {
	cname, free := cstring(name)
	defer free()
	return m.call(ctx, "StopCluster", name, func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_cluster_stop(p, cname, tok, e)
	})
}

// StartCluster starts a stopped cluster with the same API port and kubeconfig
// and waits until every node is Ready: until ctx ends, or DefaultWaitTimeout when
// ctx has no deadline. Starting a running cluster is not an error; a missing one
// is ErrNotFound. A node that does not come back is named in the error.
func (m *Manager) StartCluster(ctx context.Context, name string) error {
	cname, free := cstring(name)
	defer free()
	ms := C.uint64_t(timeoutFor(ctx).Milliseconds())
	return m.call(ctx, "StartCluster", name, func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_cluster_start(p, cname, ms, tok, e)
	})
}

// IsClusterRunning reports whether every container of the cluster runs; a
// missing cluster is ErrNotFound.
func (m *Manager) IsClusterRunning(ctx context.Context, name string) (bool, error) {
	cname, free := cstring(name)
	defer free()
	var out C.bool
	err := m.call(ctx, "IsClusterRunning", name, func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_cluster_is_running(p, cname, tok, &out, e)
	})
	return bool(out), err
}

// GetKubernetesAPIPort is the host port the cluster's API is published on. It
// is chosen at create and kept across stop and start.
func (m *Manager) GetKubernetesAPIPort(ctx context.Context, name string) (int, error) {
	info, err := m.GetClusterInfo(ctx, name)
	if err != nil {
		return 0, err
	}
	if info.APIPort == 0 {
		return 0, &Error{Code: CodeNotFound, Op: "GetKubernetesAPIPort", Cluster: name, Message: "the cluster publishes no API port"}
	}
	return info.APIPort, nil
}

// timeoutFor is ctx's time left (a little beyond, so that ctx ending is what
// stops the call), or DefaultWaitTimeout when ctx has no deadline.
func timeoutFor(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if left := time.Until(d) + time.Second; left > 0 {
			return left
		}
		return time.Millisecond
	}
	return DefaultWaitTimeout
}

// AddPortMapping maps hostPort (all interfaces) to nodePort/tcp on every server
// and agent through the running cluster's load balancer, without interrupting
// the API or any other mapping (k3d's `node edit --port-add`, minus its
// outage). An identical mapping is not an error; a failure changes nothing.
func (m *Manager) AddPortMapping(ctx context.Context, cluster string, hostPort, nodePort int32) error {
	_, err := m.AddPortMappingWith(ctx, cluster, PortMapping{HostPort: int(hostPort), ContainerPort: int(nodePort)})
	return err
}

// AddPortMappingWith is AddPortMapping for any mapping (udp, a host IP, or
// HostPort 0 for a free port); it returns the mapping as published.
func (m *Manager) AddPortMappingWith(ctx context.Context, cluster string, p PortMapping) (PortMapping, error) {
	doc, err := json.Marshal(p)
	if err != nil {
		return PortMapping{}, &Error{Code: CodeInvalidArgument, Op: "AddPortMapping", Cluster: cluster, Message: err.Error()}
	}
	cdoc, freeDoc := cstring(string(doc))
	defer freeDoc()
	cname, free := cstring(cluster)
	defer free()
	var out *C.char
	err = m.call(ctx, "AddPortMapping", cluster, func(ptr *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_cluster_port_add(ptr, cname, cdoc, tok, &out, e)
	})
	if err != nil {
		return PortMapping{}, err
	}
	defer C.kecs_string_free(out)
	var info portInfo
	if err := json.Unmarshal([]byte(C.GoString(out)), &info); err != nil {
		return PortMapping{}, &Error{Code: CodeInternal, Op: "AddPortMapping", Cluster: cluster, Message: "decoding the library's answer: " + err.Error()}
	}
	return info.mapping(), nil
}

// RemovePortMapping removes a tcp mapping AddPortMapping made; ErrNotFound
// when hostPort is not mapped.
func (m *Manager) RemovePortMapping(ctx context.Context, cluster string, hostPort int32) error {
	cname, free := cstring(cluster)
	defer free()
	cproto, freeProto := cstring("tcp")
	defer freeProto()
	return m.call(ctx, "RemovePortMapping", cluster, func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_cluster_port_remove(p, cname, C.uint16_t(hostPort), cproto, tok, e)
	})
}

// PortMappings lists the cluster's host-port mappings (the API port excepted);
// Node names the container publishing each.
func (m *Manager) PortMappings(ctx context.Context, cluster string) ([]PortMapping, error) {
	cname, free := cstring(cluster)
	defer free()
	var out *C.char
	err := m.call(ctx, "PortMappings", cluster, func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_cluster_ports(p, cname, tok, &out, e)
	})
	if err != nil {
		return nil, err
	}
	defer C.kecs_string_free(out)
	var infos []portInfo
	if err := json.Unmarshal([]byte(C.GoString(out)), &infos); err != nil {
		return nil, &Error{Code: CodeInternal, Op: "PortMappings", Cluster: cluster, Message: "decoding the library's answer: " + err.Error()}
	}
	list := make([]PortMapping, 0, len(infos))
	for _, i := range infos {
		list = append(list, i.mapping())
	}
	return list, nil
}

// CreateRegistry creates and starts a standalone registry (k3d's `registry
// create`); no cluster delete removes it. ErrAlreadyExists when the name is taken.
func (m *Manager) CreateRegistry(ctx context.Context, r RegistryCreate) (*RegistryInfo, error) {
	doc, err := json.Marshal(r)
	if err != nil {
		return nil, &Error{Code: CodeInvalidArgument, Op: "CreateRegistry", Message: err.Error()}
	}
	cdoc, free := cstring(string(doc))
	defer free()
	var out *C.char
	err = m.call(ctx, "CreateRegistry", "", func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_registry_create(p, cdoc, tok, &out, e)
	})
	if err != nil {
		return nil, err
	}
	defer C.kecs_string_free(out)
	var info RegistryInfo
	if err := json.Unmarshal([]byte(C.GoString(out)), &info); err != nil {
		return nil, &Error{Code: CodeInternal, Op: "CreateRegistry", Message: "decoding the library's answer: " + err.Error()}
	}
	return &info, nil
}

// DeleteRegistry removes a registry and its data; a missing one is not an error.
func (m *Manager) DeleteRegistry(ctx context.Context, name string) error {
	cname, free := cstring(name)
	defer free()
	return m.call(ctx, "DeleteRegistry", "", func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_registry_delete(p, cname, tok, e)
	})
}

// ListRegistries lists every registry container.
func (m *Manager) ListRegistries(ctx context.Context) ([]RegistryInfo, error) {
	var out *C.char
	err := m.call(ctx, "ListRegistries", "", func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_registry_list(p, tok, &out, e)
	})
	if err != nil {
		return nil, err
	}
	defer C.kecs_string_free(out)
	var list []RegistryInfo
	if err := json.Unmarshal([]byte(C.GoString(out)), &list); err != nil {
		return nil, &Error{Code: CodeInternal, Op: "ListRegistries", Message: "decoding the library's answer: " + err.Error()}
	}
	return list, nil
}

// ConnectRegistry connects an existing registry to a running cluster: the
// nodes get its mirrors and restart to read them (k3s reads registries.yaml
// only at start); it returns once every node is Ready again, or ctx ends
// (DefaultWaitTimeout without a deadline).
func (m *Manager) ConnectRegistry(ctx context.Context, registry, cluster string) error {
	creg, freeReg := cstring(registry)
	defer freeReg()
	cname, free := cstring(cluster)
	defer free()
	ms := C.uint64_t(timeoutFor(ctx).Milliseconds())
	return m.call(ctx, "ConnectRegistry", cluster, func(p *C.kecs_manager_t, tok *C.kecs_cancel_t, e **C.kecs_error_t) C.kecs_status_t {
		return C.kecs_registry_connect(p, creg, cname, ms, tok, e)
	})
}
