package k3dcompat

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	kecscluster "github.com/kecs-cluster/kecs-cluster/bindings/go"
)

const (
	namePrefix = "kecs-"
	// defaultImage is what KECS's manager runs when K3dImage is empty and
	// the library reports no image.
	defaultImage = "rancher/k3s:v1.31.4-k3s1"
	// readyTimeout is KECS's fixed WaitForClusterReady limit.
	readyTimeout = 2 * time.Minute
	// retryEvery paces WaitForClusterReady while nodes are still starting.
	retryEvery = 500 * time.Millisecond
	// albNodePortBase: KECS maps ALB host port start+i to NodePort 30800+i.
	albNodePortBase = 30800
)

// KECS's standard k3s arguments: no bundled ingress, load balancer, metrics or
// network policy controller (KECS deploys its own); local-storage is kept
// because PVCs need it.
var standardK3sArgs = []string{
	"--disable=traefik",
	"--disable=servicelb",
	"--disable=metrics-server",
	"--disable-network-policy",
}

// defaultALBPorts are the host ports KECS's CreateCluster always maps: the
// ALB listeners 80 and 443 land on 8080 and 8443.
var defaultALBPorts = map[int32]int32{8080: 30880, 8443: 30443}

// K3dClusterManager has the method set of KECS's k3d.K3dClusterManager and
// runs its clusters through the kecs-cluster library. It is safe for
// concurrent use.
type K3dClusterManager struct {
	mu  sync.Mutex // guards cfg: the setters may run during other calls
	cfg ClusterManagerConfig

	baseMu  sync.Mutex // guards base
	base    *kecscluster.Manager
	baseCfg kecscluster.Config
}

// NewK3dClusterManager creates a manager. A nil cfg means KECS's defaults:
// container mode when $KECS_CONTAINER_MODE is "true". It does not fail where
// KECS's constructor does not (HOME unset, Docker not running): the library is
// opened on the first call that needs it, and its error is that call's.
func NewK3dClusterManager(cfg *ClusterManagerConfig) (*K3dClusterManager, error) {
	var c ClusterManagerConfig
	if cfg == nil {
		c = ClusterManagerConfig{Provider: "k3d", ContainerMode: os.Getenv("KECS_CONTAINER_MODE") == "true"}
	} else {
		c = *cfg
		c.VolumeMounts = append([]VolumeMount(nil), cfg.VolumeMounts...)
	}
	// Always explicit: a config KECS passes (ContainerMode false included)
	// wins over $KECS_CONTAINER_MODE, which only a nil config consults.
	containerMode := c.ContainerMode
	if c.Provider == "" {
		c.Provider = "k3d"
	}
	return &K3dClusterManager{
		cfg: c,
		baseCfg: kecscluster.Config{
			Provider:       "k3d",
			ContainerMode:  &containerMode,
			KubeconfigPath: c.KubeconfigPath,
			HostAddress:    c.HostAddress,
			Image:          c.K3dImage,
			// KECS's `kecs kubeconfig get` looks for 0.0.0.0:<port>->6443/tcp
			// on the load balancer, as k3d publishes it.
			APIHostIP: "0.0.0.0",
		},
	}, nil
}

// Close releases the library's manager. KECS's manager has no Close; a
// process that keeps one manager for its lifetime need not call it.
func (m *K3dClusterManager) Close() error {
	m.baseMu.Lock()
	defer m.baseMu.Unlock()
	if m.base == nil {
		return nil
	}
	err := m.base.Close()
	m.base = nil
	return err
}

// lib opens the library's manager on first use; a failure is retried on the
// next call (HOME may be set by then).
func (m *K3dClusterManager) lib() (*kecscluster.Manager, error) {
	m.baseMu.Lock()
	defer m.baseMu.Unlock()
	if m.base != nil {
		return m.base, nil
	}
	cfg := m.baseCfg
	base, err := kecscluster.NewClusterManager(&cfg)
	if err != nil {
		return nil, err
	}
	m.base = base
	return base, nil
}

func (m *K3dClusterManager) snapshot() ClusterManagerConfig {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.cfg
	c.VolumeMounts = append([]VolumeMount(nil), m.cfg.VolumeMounts...)
	return c
}

// normalizeClusterName prepends "kecs-" unless present, as KECS does.
func normalizeClusterName(name string) string {
	if strings.HasPrefix(name, namePrefix) {
		return name
	}
	return namePrefix + name
}

// SetEnableRegistry turns KECS's shared registry on or off for later creates.
func (m *K3dClusterManager) SetEnableRegistry(enable bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg.EnableRegistry = enable
}

// SetTestMode turns test mode on or off (see the package documentation).
func (m *K3dClusterManager) SetTestMode(enable bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg.TestMode = enable
}

// IsTestMode reports whether test mode is on, for adapters such as a
// GetKubeClient that returns a fake clientset in test mode, as KECS's does.
func (m *K3dClusterManager) IsTestMode() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.TestMode
}

// SetVolumeMounts replaces the volume mounts of clusters created later.
func (m *K3dClusterManager) SetVolumeMounts(mounts []VolumeMount) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg.VolumeMounts = append([]VolumeMount(nil), mounts...)
}

// AddVolumeMount adds a volume mount for clusters created later.
func (m *K3dClusterManager) AddVolumeMount(mount VolumeMount) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg.VolumeMounts = append(m.cfg.VolumeMounts, mount)
}

// CreateCluster creates cluster kecs-<name> with KECS's standard spec and its
// default host ports: 8080→30880 and 8443→30443, plus the ALB range when
// AdditionalOptions configures one. An existing cluster is not an error.
func (m *K3dClusterManager) CreateCluster(ctx context.Context, name string) error {
	cfg := m.snapshot()
	ports, err := defaultPorts(cfg)
	if err != nil {
		return err
	}
	return m.create(ctx, cfg, name, ports)
}

// defaultPorts are CreateCluster's host port → node port mappings.
func defaultPorts(cfg ClusterManagerConfig) (map[int32]int32, error) {
	ports := make(map[int32]int32, len(defaultALBPorts))
	for h, n := range defaultALBPorts {
		ports[h] = n
	}
	start, end, err := albRange(cfg.AdditionalOptions)
	if err != nil {
		return nil, err
	}
	for i := 0; start > 0 && start+i <= end; i++ {
		ports[int32(start+i)] = int32(albNodePortBase + i)
	}
	return ports, nil
}

// albRange reads KECS's ALB host port range from AdditionalOptions; 0, 0 when
// none is configured.
func albRange(opts map[string]interface{}) (start, end int, err error) {
	num := func(key string) (int, bool, error) {
		v, ok := opts[key]
		if !ok || v == nil {
			return 0, false, nil
		}
		switch n := v.(type) {
		case int:
			return n, true, nil
		case int32:
			return int(n), true, nil
		case int64:
			return int(n), true, nil
		case float64: // what encoding/json gives
			if n == float64(int(n)) {
				return int(n), true, nil
			}
		}
		return 0, false, fmt.Errorf("k3dcompat: additionalOptions[%q] = %v: want a whole number: %w", key, v, kecscluster.ErrInvalidArgument)
	}
	start, ok, err := num("albPortRangeStart")
	if err != nil || !ok {
		return 0, 0, err
	}
	end, ok, err = num("albPortRangeEnd")
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		end = start + 99
	}
	if start < 1 || end < start || end > 65535 || end-start > 32767-albNodePortBase {
		return 0, 0, fmt.Errorf("k3dcompat: ALB port range %d-%d is not usable: %w", start, end, kecscluster.ErrInvalidArgument)
	}
	return start, end, nil
}

// CreateClusterWithPortMapping creates cluster kecs-<name> with KECS's
// standard spec, publishing each host port on server-0 as <nodePort>/tcp on
// 0.0.0.0, and returns once the API answers. An existing cluster is not an
// error (its ports are left as they are).
func (m *K3dClusterManager) CreateClusterWithPortMapping(ctx context.Context, name string, portMappings map[int32]int32) error {
	return m.create(ctx, m.snapshot(), name, portMappings)
}

func (m *K3dClusterManager) create(ctx context.Context, cfg ClusterManagerConfig, name string, portMappings map[int32]int32) error {
	base, err := m.lib()
	if err != nil {
		return err
	}
	norm := normalizeClusterName(name)
	opts := standardOptions(cfg, norm, portMappings)
	if cfg.EnableRegistry {
		if err := ensureSharedRegistry(ctx, base, cfg.RegistryPort); err != nil {
			return err
		}
		// wired in before the nodes start: no node restart, no sleep, no
		// docker exec (KECS's configureRegistryForCluster steps)
		opts.Registry = &kecscluster.RegistryOptions{Use: []string{sharedRegistry}}
	}
	return base.CreateClusterWithOptions(ctx, norm, opts)
}

// KECS's shared registry (its ensureRegistry): standalone, so no cluster
// delete removes it, mirrored as localhost:<port> and registry.kecs.local:<port>.
const (
	sharedRegistry      = "kecs-registry"
	sharedRegistryAlias = "registry.kecs.local"
)

func ensureSharedRegistry(ctx context.Context, base *kecscluster.Manager, port int) error {
	regs, err := base.ListRegistries(ctx)
	if err != nil {
		return err
	}
	for _, r := range regs {
		if r.Name == sharedRegistry {
			return nil
		}
	}
	if port == 0 {
		port = 5000
	}
	_, err = base.CreateRegistry(ctx, kecscluster.RegistryCreate{Name: sharedRegistry, HostPort: port, Aliases: []string{sharedRegistryAlias}})
	if errors.Is(err, kecscluster.ErrAlreadyExists) { // made meanwhile by another instance
		return nil
	}
	return err
}

// standardOptions is KECS's standard cluster spec (createClusterStandardWithPorts).
func standardOptions(cfg ClusterManagerConfig, norm string, portMappings map[int32]int32) *kecscluster.CreateOptions {
	opts := &kecscluster.CreateOptions{
		Image:   cfg.K3dImage,
		K3sArgs: append(append([]string(nil), standardK3sArgs...), "--node-label=kecs.io/cluster="+norm),
		// KECS reads the node's kubeconfig as a non-root user inside the node.
		Env:     map[string]string{"K3S_KUBECONFIG_MODE": "666"},
		Timeout: readyTimeout,
	}
	for _, v := range cfg.VolumeMounts {
		opts.Volumes = append(opts.Volumes, kecscluster.VolumeMount{Source: v.HostPath, ContainerPath: v.ContainerPath})
	}
	hostPorts := make([]int32, 0, len(portMappings))
	for h := range portMappings {
		hostPorts = append(hostPorts, h)
	}
	sort.Slice(hostPorts, func(i, j int) bool { return hostPorts[i] < hostPorts[j] })
	for _, h := range hostPorts {
		opts.Ports = append(opts.Ports, kecscluster.PortMapping{
			HostPort:      int(h),
			ContainerPort: int(portMappings[h]),
			Protocol:      "tcp",
			HostIP:        "0.0.0.0",
			Node:          "server:0",
		})
	}
	return opts
}

// StartCluster starts a stopped cluster's containers, with their port
// bindings and API port kept, and waits for the server (up to 2 minutes, or
// ctx's deadline). A running cluster is not an error.
func (m *K3dClusterManager) StartCluster(ctx context.Context, name string) error {
	base, err := m.lib()
	if err != nil {
		return err
	}
	// KECS's 2 minutes, or ctx's deadline if that comes first
	sctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	return base.StartCluster(sctx, normalizeClusterName(name))
}

// StartClusterWithPorts is StartCluster, then makes sure every host port of
// portMappings is published: ports the containers already publish are kept
// as they are, missing ones are added through the load balancer with
// AddPortMapping (to every node, without restarting anything). A host port
// already published for another node port is an error; nothing is changed
// for it.
func (m *K3dClusterManager) StartClusterWithPorts(ctx context.Context, name string, portMappings map[int32]int32) error {
	if err := m.StartCluster(ctx, name); err != nil {
		return err
	}
	base, err := m.lib()
	if err != nil {
		return err
	}
	norm := normalizeClusterName(name)
	existing, err := base.PortMappings(ctx, norm)
	if err != nil {
		return err
	}
	published := map[int]int{}
	for _, p := range existing {
		if p.Protocol == "" || p.Protocol == "tcp" {
			published[p.HostPort] = p.ContainerPort
		}
	}
	hostPorts := make([]int32, 0, len(portMappings))
	for h := range portMappings {
		hostPorts = append(hostPorts, h)
	}
	sort.Slice(hostPorts, func(i, j int) bool { return hostPorts[i] < hostPorts[j] })
	for _, h := range hostPorts {
		want := int(portMappings[h])
		if got, ok := published[int(h)]; ok {
			if got != want {
				return fmt.Errorf("k3dcompat: cluster %s: host port %d already maps to node port %d, not %d: %w", norm, h, got, want, kecscluster.ErrAlreadyExists)
			}
			continue
		}
		if err := base.AddPortMapping(ctx, norm, h, int32(want)); err != nil {
			return err
		}
	}
	return nil
}

// StopCluster stops every container of the cluster; containers, volumes,
// port bindings and the kubeconfig stay for StartCluster.
func (m *K3dClusterManager) StopCluster(ctx context.Context, name string) error {
	base, err := m.lib()
	if err != nil {
		return err
	}
	return base.StopCluster(ctx, normalizeClusterName(name))
}

// DeleteCluster deletes the cluster and the kubeconfig files the library
// wrote for it (never ~/.kube/config). A cluster that is already gone is
// success, and so is a delete whose only failure is cleaning up after the
// cluster (its network, say) once the cluster itself is gone.
func (m *K3dClusterManager) DeleteCluster(ctx context.Context, name string) error {
	base, err := m.lib()
	if err != nil {
		return err
	}
	norm := normalizeClusterName(name)
	err = base.DeleteCluster(ctx, norm)
	if err == nil || ctx.Err() != nil {
		return err
	}
	if exists, xerr := base.ClusterExists(ctx, norm); xerr == nil && !exists {
		return nil
	}
	return err
}

// ClusterExists reports whether the cluster exists; anything absent, invalid
// names included, is (false, nil). In test mode it is always (false, nil), as
// in KECS.
func (m *K3dClusterManager) ClusterExists(ctx context.Context, name string) (bool, error) {
	if m.IsTestMode() {
		return false, nil
	}
	base, err := m.lib()
	if err != nil {
		return false, err
	}
	ok, err := base.ClusterExists(ctx, normalizeClusterName(name))
	if errors.Is(err, kecscluster.ErrInvalidArgument) || errors.Is(err, kecscluster.ErrNotFound) {
		return false, nil
	}
	return ok, err
}

// ListClusters lists the kecs-* clusters with the prefix stripped from Name
// (KECS uses it as the instance name).
func (m *K3dClusterManager) ListClusters(ctx context.Context) ([]ClusterInfo, error) {
	base, err := m.lib()
	if err != nil {
		return nil, err
	}
	list, err := base.ListClusters(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ClusterInfo, 0, len(list))
	for i := range list {
		if !strings.HasPrefix(list[i].Name, namePrefix) {
			continue
		}
		info := convertInfo(&list[i], strings.TrimPrefix(list[i].Name, namePrefix))
		out = append(out, info)
	}
	return out, nil
}

// anyRunning: KECS counts a cluster as running when any of its containers
// (the load balancer included) runs.
func anyRunning(info *kecscluster.ClusterInfo) bool {
	for _, n := range info.Nodes {
		if n.State == "running" {
			return true
		}
	}
	return false
}

func convertInfo(info *kecscluster.ClusterInfo, name string) ClusterInfo {
	running := anyRunning(info)
	status := "Stopped"
	if running {
		status = "Running"
	}
	version := info.Version
	if version == "" {
		version = "unknown"
	}
	image := info.Metadata["image"]
	if image == "" {
		image = defaultImage
	}
	return ClusterInfo{
		Name:      name,
		Status:    status,
		Provider:  "k3d",
		NodeCount: info.NodeCount,
		Version:   version,
		Metadata: map[string]string{
			"k3d_cluster_name": info.Name,
			"image":            image,
		},
		KubeconfigPath: info.KubeconfigPath,
		APIPort:        info.APIPort,
		Running:        running,
	}
}

// IsClusterRunning reports whether any container of the cluster runs (the
// load balancer counts); a missing cluster is (false, nil).
func (m *K3dClusterManager) IsClusterRunning(ctx context.Context, name string) (bool, error) {
	base, err := m.lib()
	if err != nil {
		return false, err
	}
	info, err := base.GetClusterInfo(ctx, normalizeClusterName(name))
	if errors.Is(err, kecscluster.ErrNotFound) || errors.Is(err, kecscluster.ErrInvalidArgument) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return anyRunning(info), nil
}

// WaitForClusterReady waits until every node of the cluster is Ready, for at
// most KECS's 2 minutes or until ctx ends, whichever comes first. Nodes that
// are still starting (or a cluster not created yet) are waited for, not an
// error.
func (m *K3dClusterManager) WaitForClusterReady(ctx context.Context, name string) error {
	base, err := m.lib()
	if err != nil {
		return err
	}
	norm := normalizeClusterName(name)
	wctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	retry := time.NewTicker(retryEvery)
	defer retry.Stop()
	for {
		err := base.WaitForClusterReadyContext(wctx, norm)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, kecscluster.ErrInvalidArgument):
			return err
		case wctx.Err() != nil:
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for cluster %s to be ready: %w", norm, ctx.Err())
			}
			return fmt.Errorf("timeout waiting for cluster %s to be ready after %v: %w", norm, readyTimeout, err)
		}
		// a node not running yet (or no cluster yet): the library says so at
		// once, so look again shortly
		select {
		case <-wctx.Done():
		case <-retry.C:
		}
	}
}

// GetKubeconfigPath is where the library writes the cluster's kubeconfig:
// <KubeconfigPath>/kecs-<name>.config. Unlike KECS's host mode it is never
// the shared ~/.kube/config. "" when the library cannot be opened.
func (m *K3dClusterManager) GetKubeconfigPath(name string) string {
	base, err := m.lib()
	if err != nil {
		return ""
	}
	return base.GetKubeconfigPath(normalizeClusterName(name))
}

// GetHostKubeconfigPath is the kubeconfig for use from the host: in container
// mode <KubeconfigPath>/kecs-<name>.host.config (the host's published API
// port), otherwise GetKubeconfigPath.
func (m *K3dClusterManager) GetHostKubeconfigPath(name string) string {
	path := m.GetKubeconfigPath(name)
	if path == "" || !m.snapshot().ContainerMode {
		return path
	}
	return strings.TrimSuffix(path, ".config") + ".host.config"
}

// GetClusterInfo describes the cluster (Name as passed). A missing cluster is
// an error saying it does not exist. In test mode it returns KECS's mock info.
func (m *K3dClusterManager) GetClusterInfo(ctx context.Context, name string) (*ClusterInfo, error) {
	if m.IsTestMode() {
		return &ClusterInfo{
			Name:      name,
			Status:    "Running",
			Provider:  "k3d",
			NodeCount: 1,
			Version:   "v1.31.4",
			Metadata:  map[string]string{"k3d_cluster_name": normalizeClusterName(name), "image": defaultImage, "test_mode": "true"},
			Running:   true,
		}, nil
	}
	base, err := m.lib()
	if err != nil {
		return nil, err
	}
	norm := normalizeClusterName(name)
	info, err := base.GetClusterInfo(ctx, norm)
	if errors.Is(err, kecscluster.ErrNotFound) || errors.Is(err, kecscluster.ErrInvalidArgument) {
		return nil, fmt.Errorf("cluster %s does not exist: %w", norm, err)
	}
	if err != nil {
		return nil, err
	}
	out := convertInfo(info, name)
	return &out, nil
}

// GetKubernetesAPIPort is the host port the cluster's API is published on
// (on the load balancer k3d-kecs-<name>-serverlb, 0.0.0.0); it stays the same
// across stop and start.
func (m *K3dClusterManager) GetKubernetesAPIPort(ctx context.Context, name string) (int, error) {
	base, err := m.lib()
	if err != nil {
		return 0, err
	}
	return base.GetKubernetesAPIPort(ctx, normalizeClusterName(name))
}

// mockKubeconfig is what GetKubeconfig gives in test mode: KECS's mock
// rest.Config points at https://mock-cluster:6443.
const mockKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: mock-cluster
  cluster:
    server: https://mock-cluster:6443
contexts:
- name: mock-cluster
  context:
    cluster: mock-cluster
    user: mock-cluster
current-context: mock-cluster
users:
- name: mock-cluster
  user: {}
`

// GetKubeconfig returns the cluster's kubeconfig (YAML) for building
// client-go clients (KECS's GetKubeClient and GetKubeConfig; see the package
// documentation for the adapter). In test mode it points at
// https://mock-cluster:6443, as KECS's mock config does.
func (m *K3dClusterManager) GetKubeconfig(ctx context.Context, name string) ([]byte, error) {
	if m.IsTestMode() {
		return []byte(mockKubeconfig), nil
	}
	base, err := m.lib()
	if err != nil {
		return nil, err
	}
	return base.GetKubeconfig(ctx, normalizeClusterName(name))
}
