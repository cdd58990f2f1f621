//go:build !cgo

package kecscluster

// The package's API for builds without cgo (CGO_ENABLED=0, the default when
// cross-compiling): the files that call the library import "C" and drop out of
// such a build, so this file declares the same exported names, and every call
// reports ErrCgoRequired instead of the caller failing to compile with
// "undefined: kecscluster.NewClusterManager". nocgo_parity_test.go fails when
// an exported name or signature exists with cgo but not here (or the reverse).

import (
	"context"
	"fmt"
	"time"
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

// Manager is never created in a build without cgo: NewClusterManager fails.
type Manager struct{}

// errNoCgo says what to do; it matches ErrCgoRequired with errors.Is.
var errNoCgo = fmt.Errorf("%w: this binary was built with CGO_ENABLED=0; rebuild it with CGO_ENABLED=1 and a C compiler, "+
	"with libkecs_cluster installed (scripts/install.sh) or built in the repository (cargo build --release); "+
	"for a fully static binary add -ldflags '-linkmode external -extldflags -static'", ErrCgoRequired)

// Version is "" without cgo: there is no library to ask.
func Version() string { return "" }

// NewClusterManager always fails without cgo, with an error matching ErrCgoRequired.
func NewClusterManager(cfg *Config) (*Manager, error) { return nil, errNoCgo }

// Close does nothing without cgo.
func (m *Manager) Close() error { return nil }

// CreateCluster fails with ErrCgoRequired.
func (m *Manager) CreateCluster(ctx context.Context, name string) error { return errNoCgo }

// CreateClusterWithOptions fails with ErrCgoRequired.
func (m *Manager) CreateClusterWithOptions(ctx context.Context, name string, opts *CreateOptions) error {
	return errNoCgo
}

// DeleteCluster fails with ErrCgoRequired.
func (m *Manager) DeleteCluster(ctx context.Context, name string) error { return errNoCgo }

// ClusterExists fails with ErrCgoRequired.
func (m *Manager) ClusterExists(ctx context.Context, name string) (bool, error) {
	return false, errNoCgo
}

// WaitForClusterReady fails with ErrCgoRequired.
func (m *Manager) WaitForClusterReady(name string, timeout time.Duration) error { return errNoCgo }

// WaitForClusterReadyContext fails with ErrCgoRequired.
func (m *Manager) WaitForClusterReadyContext(ctx context.Context, name string) error {
	return errNoCgo
}

// GetKubeconfigPath is "" without cgo.
func (m *Manager) GetKubeconfigPath(name string) string { return "" }

// GetKubeconfig fails with ErrCgoRequired.
func (m *Manager) GetKubeconfig(ctx context.Context, name string) ([]byte, error) {
	return nil, errNoCgo
}

// GetClusterInfo fails with ErrCgoRequired.
func (m *Manager) GetClusterInfo(ctx context.Context, name string) (*ClusterInfo, error) {
	return nil, errNoCgo
}

// ListClusters fails with ErrCgoRequired.
func (m *Manager) ListClusters(ctx context.Context) ([]ClusterInfo, error) {
	return nil, errNoCgo
}

// StopCluster fails with ErrCgoRequired.
func (m *Manager) StopCluster(ctx context.Context, name string) error { return errNoCgo }

// StartCluster fails with ErrCgoRequired.
func (m *Manager) StartCluster(ctx context.Context, name string) error { return errNoCgo }

// IsClusterRunning fails with ErrCgoRequired.
func (m *Manager) IsClusterRunning(ctx context.Context, name string) (bool, error) {
	return false, errNoCgo
}

// GetKubernetesAPIPort fails with ErrCgoRequired.
func (m *Manager) GetKubernetesAPIPort(ctx context.Context, name string) (int, error) {
	return 0, errNoCgo
}

// AddPortMapping fails with ErrCgoRequired.
func (m *Manager) AddPortMapping(ctx context.Context, cluster string, hostPort, nodePort int32) error {
	return errNoCgo
}

// AddPortMappingWith fails with ErrCgoRequired.
func (m *Manager) AddPortMappingWith(ctx context.Context, cluster string, p PortMapping) (PortMapping, error) {
	return PortMapping{}, errNoCgo
}

// RemovePortMapping fails with ErrCgoRequired.
func (m *Manager) RemovePortMapping(ctx context.Context, cluster string, hostPort int32) error {
	return errNoCgo
}

// PortMappings fails with ErrCgoRequired.
func (m *Manager) PortMappings(ctx context.Context, cluster string) ([]PortMapping, error) {
	return nil, errNoCgo
}

// CreateRegistry needs cgo; see ErrCgoRequired.
func (m *Manager) CreateRegistry(ctx context.Context, r RegistryCreate) (*RegistryInfo, error) {
	return nil, errNoCgo
}

// DeleteRegistry needs cgo; see ErrCgoRequired.
func (m *Manager) DeleteRegistry(ctx context.Context, name string) error { return errNoCgo }

// ListRegistries needs cgo; see ErrCgoRequired.
func (m *Manager) ListRegistries(ctx context.Context) ([]RegistryInfo, error) {
	return nil, errNoCgo
}

// ConnectRegistry needs cgo; see ErrCgoRequired.
func (m *Manager) ConnectRegistry(ctx context.Context, registry, cluster string) error {
	return errNoCgo
}
