package k3dcompat

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// instance is one KECS instance as host/instance/manager.go drives it.
type instance struct {
	name                  string // the instance name; the cluster is kecs-<name>
	api, admin, http, tls int32  // host ports → 30080, 30081, 30880, 30443
	late                  int32  // host port → 30082, added on restart
	dataDir               string // ~/.kecs/instances/<name>/data stand-in
	apiPort               int    // the Kubernetes API host port
	kubeconfig            []byte
	portMappingsAtCreate  map[int32]int32
	portMappingsAtRestart map[int32]int32
}

func newInstance(t *testing.T, tag string) *instance {
	p := freePorts(t, 5)
	in := &instance{
		name: uniqueName(tag), api: p[0], admin: p[1], http: p[2], tls: p[3], late: p[4],
		dataDir: filepath.Join(t.TempDir(), "data"),
	}
	in.portMappingsAtCreate = map[int32]int32{in.api: 30080, in.admin: 30081, in.http: 30880, in.tls: 30443}
	// a restart passes only {api, admin} in KECS; one extra mapping checks that
	// missing ones are added
	in.portMappingsAtRestart = map[int32]int32{in.api: 30080, in.admin: 30081, in.late: 30082}
	if err := os.MkdirAll(in.dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return in
}

func (in *instance) full() string { return "kecs-" + in.name }

// startNew is KECS's `kecs start` for a new instance.
func startNew(t *testing.T, m *K3dClusterManager, in *instance) {
	t.Helper()
	ctx := context.Background()
	if ok, err := m.ClusterExists(ctx, in.full()); err != nil || ok {
		t.Fatalf("ClusterExists before create = %v, %v", ok, err)
	}
	m.SetVolumeMounts([]VolumeMount{{HostPath: in.dataDir, ContainerPath: in.dataDir}})
	m.SetEnableRegistry(true) // as KECS does: the shared kecs-registry
	start := time.Now()
	if err := m.CreateClusterWithPortMapping(ctx, in.full(), in.portMappingsAtCreate); err != nil {
		t.Fatalf("CreateClusterWithPortMapping: %v", err)
	}
	t.Logf("%s created in %v", in.full(), time.Since(start).Round(time.Millisecond))
	if ok, err := m.ClusterExists(ctx, in.name); err != nil || !ok {
		t.Fatalf("ClusterExists after create = %v, %v", ok, err)
	}

	// KECS's standard spec on server-0: k3s args, node label, env, bind mount,
	// NodePort mappings on 0.0.0.0
	server := inspect(t, "k3d-"+in.full()+"-server-0")
	cmd := strings.Join(server.Config.Cmd, " ")
	for _, arg := range append(append([]string(nil), standardK3sArgs...), "--node-label=kecs.io/cluster="+in.full()) {
		if !strings.Contains(cmd, arg) {
			t.Errorf("server-0 command %q lacks %s", cmd, arg)
		}
	}
	if !contains(server.Config.Env, "K3S_KUBECONFIG_MODE=666") {
		t.Errorf("server-0 env %v lacks K3S_KUBECONFIG_MODE=666", server.Config.Env)
	}
	mounted := false
	for _, mt := range server.Mounts {
		mounted = mounted || (mt.Type == "bind" && mt.Source == in.dataDir && mt.Destination == in.dataDir)
	}
	if !mounted {
		t.Errorf("server-0 mounts %+v lack %s", server.Mounts, in.dataDir)
	}
	for host, nodePort := range in.portMappingsAtCreate {
		b := server.HostConfig.PortBindings[fmt.Sprintf("%d/tcp", nodePort)]
		if len(b) != 1 || b[0].HostIp != "0.0.0.0" || b[0].HostPort != fmt.Sprint(host) {
			t.Errorf("server-0 binding of %d/tcp = %+v, want 0.0.0.0:%d", nodePort, b, host)
		}
	}

	// the API port, published by the load balancer on 0.0.0.0 (what `kecs
	// kubeconfig get` parses from docker ps)
	port, err := m.GetKubernetesAPIPort(ctx, in.full())
	if err != nil || port <= 0 {
		t.Fatalf("GetKubernetesAPIPort = %d, %v", port, err)
	}
	in.apiPort = port
	lb := inspect(t, "k3d-"+in.full()+"-serverlb")
	if b := lb.HostConfig.PortBindings["6443/tcp"]; len(b) != 1 || b[0].HostIp != "0.0.0.0" || b[0].HostPort != fmt.Sprint(port) {
		t.Errorf("serverlb 6443/tcp binding = %+v, want 0.0.0.0:%d", b, port)
	}

	kc, err := m.GetKubeconfig(ctx, in.full())
	if err != nil {
		t.Fatal(err)
	}
	in.kubeconfig = kc
	if srv := kubeconfigField(t, kc, "server"); !strings.HasSuffix(srv, fmt.Sprintf(":%d", port)) {
		t.Errorf("kubeconfig server %s is not on API port %d", srv, port)
	}
	api := newKubeAPI(t, kc)
	if code, body := api.do(t, "POST", "/api/v1/namespaces", map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "kecs-system"},
	}); code != http.StatusCreated {
		t.Fatalf("create namespace kecs-system: HTTP %d: %s", code, body)
	}
	if ok, err := m.IsClusterRunning(ctx, in.name); err != nil || !ok {
		t.Fatalf("IsClusterRunning after create = %v, %v", ok, err)
	}

	// a NodePort Service: the node answers on 30080 (and 30082, for the
	// mapping added on restart) with its name
	if code, body := api.do(t, "POST", "/api/v1/namespaces/kecs-system/services", map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": "kecs-api"},
		"spec": map[string]any{"type": "NodePort", "selector": map[string]any{"app": "kecs"}, "ports": []any{
			map[string]any{"name": "api", "port": 80, "nodePort": 30080},
			map[string]any{"name": "late", "port": 81, "nodePort": 30082},
		}},
	}); code != http.StatusCreated {
		t.Fatalf("create NodePort service: HTTP %d: %s", code, body)
	}
	if got := httpAnswer(t, in.api, 30*time.Second); !strings.Contains(got, "server-0") {
		t.Errorf("host port %d → 30080 answered %q, want server-0's name", in.api, got)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// listed finds instance `name` (prefix stripped) in ListClusters.
func listed(t *testing.T, m *K3dClusterManager, name string) (ClusterInfo, bool) {
	t.Helper()
	list, err := m.ListClusters(context.Background())
	if err != nil {
		t.Fatalf("ListClusters: %v", err)
	}
	for _, c := range list {
		if strings.HasPrefix(c.Name, "kecs-") {
			t.Errorf("ListClusters name %q keeps the kecs- prefix", c.Name)
		}
		if c.Name == name {
			return c, true
		}
	}
	return ClusterInfo{}, false
}

// TestInstanceFlows mirrors KECS's host/instance/manager.go with two
// instances side by side: start (new), stop, restart, destroy, and
// ListClusters throughout.
func TestInstanceFlows(t *testing.T) {
	requireImages(t)
	cfg := testConfig(t)
	removeRegistryAfter(t)
	cfg.RegistryPort = int(freePorts(t, 1)[0])
	m := newManager(t, cfg)
	ctx := context.Background()
	a, b := newInstance(t, "a"), newInstance(t, "b")
	cleanupCluster(t, cfg, a.full())
	cleanupCluster(t, cfg, b.full())

	// start (new), both
	startNew(t, m, a)
	startNew(t, m, b)
	if a.apiPort == b.apiPort {
		t.Fatalf("both instances have API port %d", a.apiPort)
	}
	for _, in := range []*instance{a, b} {
		c, ok := listed(t, m, in.name)
		if !ok || !c.Running || c.Status != "Running" || c.APIPort != in.apiPort || c.Provider != "k3d" {
			t.Fatalf("ListClusters entry for %s = %+v (found %v)", in.name, c, ok)
		}
	}

	// stop a: nothing of it runs, b untouched
	if err := m.StopCluster(ctx, a.full()); err != nil {
		t.Fatalf("StopCluster: %v", err)
	}
	if ok, err := m.IsClusterRunning(ctx, a.full()); err != nil || ok {
		t.Fatalf("IsClusterRunning after stop = %v, %v", ok, err)
	}
	if ok, err := m.IsClusterRunning(ctx, b.full()); err != nil || !ok {
		t.Fatalf("IsClusterRunning of the other instance = %v, %v", ok, err)
	}
	if c, ok := listed(t, m, a.name); !ok || c.Running || c.Status != "Stopped" {
		t.Fatalf("ListClusters entry for stopped %s = %+v (found %v)", a.name, c, ok)
	}
	info, err := m.GetClusterInfo(ctx, a.full())
	if err != nil || info.Status != "Stopped" || info.Running || info.Version != "unknown" || info.Name != a.full() ||
		info.Metadata["k3d_cluster_name"] != a.full() || info.Metadata["image"] != simImage {
		t.Fatalf("GetClusterInfo of stopped cluster = %+v, %v", info, err)
	}
	if _, err := os.Stat(m.GetKubeconfigPath(a.name)); err != nil {
		t.Fatalf("kubeconfig gone after stop: %v", err)
	}

	// restart a: the containers come back with their bindings, the missing
	// mapping is added, same API port, data kept
	start := time.Now()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := m.StartClusterWithPorts(startCtx, a.full(), a.portMappingsAtRestart); err != nil {
		t.Fatalf("StartClusterWithPorts: %v\n%s", err, containerLogs(t, "k3d-"+a.full()+"-serverlb"))
	}
	if err := m.WaitForClusterReady(ctx, a.full()); err != nil {
		t.Fatalf("WaitForClusterReady: %v", err)
	}
	t.Logf("%s restarted in %v", a.full(), time.Since(start).Round(time.Millisecond))
	if port, err := m.GetKubernetesAPIPort(ctx, a.full()); err != nil || port != a.apiPort {
		t.Fatalf("API port after restart = %d, %v; want %d", port, err, a.apiPort)
	}
	if ok, err := m.IsClusterRunning(ctx, a.full()); err != nil || !ok {
		t.Fatalf("IsClusterRunning after restart = %v, %v", ok, err)
	}
	info, err = m.GetClusterInfo(ctx, a.name)
	if err != nil || info.Status != "Running" || !info.Running || !strings.HasPrefix(info.Version, "v1.") || info.Name != a.name {
		t.Fatalf("GetClusterInfo after restart = %+v, %v", info, err)
	}
	kc, err := m.GetKubeconfig(ctx, a.full())
	if err != nil {
		t.Fatal(err)
	}
	if code, body := newKubeAPI(t, kc).do(t, "GET", "/api/v1/namespaces/kecs-system", nil); code != http.StatusOK {
		t.Fatalf("namespace kecs-system after restart: HTTP %d: %s", code, body)
	}
	for _, p := range []int32{a.api, a.late} {
		if got := httpAnswer(t, p, 30*time.Second); !strings.Contains(got, "server-0") {
			t.Errorf("host port %d after restart answered %q", p, got)
		}
	}
	// restarting again with the same ports changes nothing
	if err := m.StartClusterWithPorts(ctx, a.full(), a.portMappingsAtRestart); err != nil {
		t.Fatalf("second StartClusterWithPorts: %v", err)
	}

	// destroy a: nothing left; b still answers
	path := m.GetKubeconfigPath(a.name)
	if err := m.DeleteCluster(ctx, a.full()); err != nil {
		t.Fatalf("DeleteCluster: %v", err)
	}
	if left := leftovers(t, a.full()); len(left) != 0 {
		t.Fatalf("left in Docker after DeleteCluster: %v", left)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("kubeconfig %s still there after DeleteCluster: %v", path, err)
	}
	if err := m.DeleteCluster(ctx, a.full()); err != nil {
		t.Fatalf("DeleteCluster of a deleted cluster: %v", err)
	}
	if ok, err := m.ClusterExists(ctx, a.name); err != nil || ok {
		t.Fatalf("ClusterExists after delete = %v, %v", ok, err)
	}
	if ok, err := m.IsClusterRunning(ctx, a.name); err != nil || ok {
		t.Fatalf("IsClusterRunning after delete = %v, %v", ok, err)
	}
	if _, ok := listed(t, m, a.name); ok {
		t.Fatalf("ListClusters still lists %s", a.name)
	}
	if _, ok := listed(t, m, b.name); !ok {
		t.Fatalf("ListClusters lost %s", b.name)
	}
	if _, running := registryRunning(t); !running {
		t.Fatalf("the shared registry stopped with %s while %s uses it", a.name, b.name)
	}
	if got := httpAnswer(t, b.api, 30*time.Second); !strings.Contains(got, "server-0") {
		t.Errorf("the other instance's host port %d answered %q", b.api, got)
	}
	if err := m.DeleteCluster(ctx, b.name); err != nil {
		t.Fatalf("DeleteCluster %s: %v", b.name, err)
	}
	if left := leftovers(t, b.full()); len(left) != 0 {
		t.Fatalf("left in Docker after DeleteCluster: %v", left)
	}
	if entries, err := os.ReadDir(cfg.KubeconfigPath); err != nil || len(entries) != 0 {
		t.Fatalf("kubeconfig directory after both deletes: %v, %v", entries, err)
	}
}
