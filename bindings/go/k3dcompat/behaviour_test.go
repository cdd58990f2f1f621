package k3dcompat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	kecscluster "github.com/kecs-cluster/kecs-cluster/bindings/go"
)

// What KECS's callers rely on for clusters that are not there.
func TestAbsentClusters(t *testing.T) {
	requireImages(t)
	m := newManager(t, testConfig(t))
	ctx := context.Background()
	name := uniqueName("absent")
	for _, n := range []string{name, "kecs-" + name, "Not_A_Valid_Name!", ""} {
		if ok, err := m.ClusterExists(ctx, n); err != nil || ok {
			t.Errorf("ClusterExists(%q) = %v, %v; want false, nil", n, ok, err)
		}
		if ok, err := m.IsClusterRunning(ctx, n); err != nil || ok {
			t.Errorf("IsClusterRunning(%q) = %v, %v; want false, nil", n, ok, err)
		}
	}
	if err := m.DeleteCluster(ctx, name); err != nil {
		t.Errorf("DeleteCluster of a missing cluster: %v", err)
	}
	if _, err := m.GetClusterInfo(ctx, name); err == nil || !strings.Contains(err.Error(), "does not exist") || !errors.Is(err, kecscluster.ErrNotFound) {
		t.Errorf("GetClusterInfo of a missing cluster: %v", err)
	}
	if _, err := m.GetKubernetesAPIPort(ctx, name); !errors.Is(err, kecscluster.ErrNotFound) {
		t.Errorf("GetKubernetesAPIPort of a missing cluster: %v", err)
	}
	// WaitForClusterReady keeps waiting for a cluster that is not there yet,
	// but no longer than ctx allows (KECS's ignores ctx)
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	err := m.WaitForClusterReady(wctx, name)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitForClusterReady of a missing cluster: %v", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Errorf("WaitForClusterReady returned after %v, want about ctx's 1s", d)
	}
}

// Test mode stubs ClusterExists, GetClusterInfo and GetKubeconfig, as KECS's
// does; creating, the API port and waiting stay real. WaitForClusterReady
// waits through a start that is still going on.
func TestTestModeAndWaitDuringStart(t *testing.T) {
	requireImages(t)
	cfg := testConfig(t)
	cfg.TestMode = true
	m := newManager(t, cfg)
	ctx := context.Background()
	name := uniqueName("tm")
	cleanupCluster(t, cfg, name)
	p := freePorts(t, 1)
	if err := m.CreateClusterWithPortMapping(ctx, name, map[int32]int32{p[0]: 30080}); err != nil {
		t.Fatalf("CreateClusterWithPortMapping in test mode: %v", err)
	}
	if ok, err := m.ClusterExists(ctx, name); err != nil || ok {
		t.Errorf("ClusterExists in test mode = %v, %v; want false, nil", ok, err)
	}
	if port, err := m.GetKubernetesAPIPort(ctx, name); err != nil || port <= 0 {
		t.Errorf("GetKubernetesAPIPort in test mode = %d, %v", port, err)
	}
	info, err := m.GetClusterInfo(ctx, name)
	if err != nil || info.Name != name || info.Status != "Running" || !info.Running || info.Version != "v1.31.4" || info.Provider != "k3d" {
		t.Errorf("GetClusterInfo in test mode = %+v, %v", info, err)
	}
	kc, err := m.GetKubeconfig(ctx, name)
	if err != nil || kubeconfigField(t, kc, "server") != "https://mock-cluster:6443" {
		t.Errorf("GetKubeconfig in test mode = %s, %v", kc, err)
	}

	m.SetTestMode(false)
	if ok, err := m.ClusterExists(ctx, name); err != nil || !ok {
		t.Fatalf("ClusterExists out of test mode = %v, %v", ok, err)
	}
	if err := m.StopCluster(ctx, name); err != nil {
		t.Fatal(err)
	}
	// stopped: keeps waiting (KECS's nodes "still starting"), until ctx ends
	sctx, scancel := context.WithTimeout(ctx, time.Second)
	defer scancel()
	if err := m.WaitForClusterReady(sctx, name); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForClusterReady on a stopped cluster: %v", err)
	}
	started := make(chan error, 1)
	go func() { started <- m.StartCluster(ctx, name) }()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := m.WaitForClusterReady(wctx, name); err != nil {
		t.Fatalf("WaitForClusterReady during a start: %v\n%s", err, containerLogs(t, "k3d-kecs-"+name+"-serverlb"))
	}
	if err := <-started; err != nil {
		t.Fatalf("StartCluster: %v\n%s", err, containerLogs(t, "k3d-kecs-"+name+"-serverlb"))
	}
}

// The constructor does not fail where KECS's does not: HOME unset with no
// kubeconfig directory is the first call's error, and a later call works once
// HOME is set.
func TestConstructorDefersErrors(t *testing.T) {
	t.Setenv("HOME", "")
	t.Setenv("KECS_KUBECONFIG_PATH", "")
	t.Setenv("KECS_CONTAINER_MODE", "")
	m := newManager(t, &ClusterManagerConfig{K3dImage: simImage})
	if _, err := m.ClusterExists(context.Background(), "x"); !errors.Is(err, kecscluster.ErrInvalidArgument) {
		t.Fatalf("ClusterExists with HOME unset: %v", err)
	}
	if p := m.GetKubeconfigPath("x"); p != "" {
		t.Fatalf("GetKubeconfigPath with HOME unset = %q", p)
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	if p, want := m.GetKubeconfigPath("x"), filepath.Join(home, ".kube", "kecs-x.config"); p != want {
		t.Fatalf("GetKubeconfigPath once HOME is set = %q, want %q", p, want)
	}
}

// An explicit containerMode (false, as KECS passes it) wins over
// KECS_CONTAINER_MODE=true; a nil config follows the environment.
func TestExplicitContainerModeWins(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("KECS_KUBECONFIG_PATH", "")
	t.Setenv("KECS_CONTAINER_MODE", "true")
	host := newManager(t, &ClusterManagerConfig{ContainerMode: false})
	if p, want := host.GetKubeconfigPath("x"), filepath.Join(home, ".kube", "kecs-x.config"); p != want {
		t.Errorf("explicit containerMode false: GetKubeconfigPath = %q, want %q", p, want)
	}
	if p := host.GetHostKubeconfigPath("x"); p != host.GetKubeconfigPath("x") {
		t.Errorf("host mode: GetHostKubeconfigPath = %q", p)
	}
	container := newManager(t, nil)
	if p, want := container.GetKubeconfigPath("kecs-x"), "/kecs/kubeconfig/kecs-x.config"; p != want {
		t.Errorf("nil config with KECS_CONTAINER_MODE=true: GetKubeconfigPath = %q, want %q", p, want)
	}
	if p, want := container.GetHostKubeconfigPath("x"), "/kecs/kubeconfig/kecs-x.host.config"; p != want {
		t.Errorf("container mode: GetHostKubeconfigPath = %q, want %q", p, want)
	}
}

// KECS's standard spec, as handed to the library.
func TestStandardOptions(t *testing.T) {
	cfg := ClusterManagerConfig{
		K3dImage:     "img:1",
		VolumeMounts: []VolumeMount{{HostPath: "/h/data", ContainerPath: "/h/data"}},
	}
	opts := standardOptions(cfg, "kecs-i", map[int32]int32{8443: 30443, 5373: 30080})
	want := &kecscluster.CreateOptions{
		Image: "img:1",
		K3sArgs: []string{"--disable=traefik", "--disable=servicelb", "--disable=metrics-server",
			"--disable-network-policy", "--node-label=kecs.io/cluster=kecs-i"},
		Env:     map[string]string{"K3S_KUBECONFIG_MODE": "666"},
		Volumes: []kecscluster.VolumeMount{{Source: "/h/data", ContainerPath: "/h/data"}},
		Ports: []kecscluster.PortMapping{
			{HostPort: 5373, ContainerPort: 30080, Protocol: "tcp", HostIP: "0.0.0.0", Node: "server:0"},
			{HostPort: 8443, ContainerPort: 30443, Protocol: "tcp", HostIP: "0.0.0.0", Node: "server:0"},
		},
		Timeout: 2 * time.Minute,
	}
	if !reflect.DeepEqual(opts, want) {
		t.Errorf("standardOptions =\n%+v\nwant\n%+v", opts, want)
	}

	ports, err := defaultPorts(ClusterManagerConfig{})
	if err != nil || !reflect.DeepEqual(ports, map[int32]int32{8080: 30880, 8443: 30443}) {
		t.Errorf("defaultPorts = %v, %v", ports, err)
	}
	var fromJSON ClusterManagerConfig
	if err := json.Unmarshal([]byte(`{"additionalOptions":{"albPortRangeStart":9000,"albPortRangeEnd":9002}}`), &fromJSON); err != nil {
		t.Fatal(err)
	}
	ports, err = defaultPorts(fromJSON)
	if err != nil || !reflect.DeepEqual(ports, map[int32]int32{8080: 30880, 8443: 30443, 9000: 30800, 9001: 30801, 9002: 30802}) {
		t.Errorf("defaultPorts with an ALB range = %v, %v", ports, err)
	}
	ports, err = defaultPorts(ClusterManagerConfig{AdditionalOptions: map[string]interface{}{"albPortRangeStart": 9000}})
	if err != nil || len(ports) != 102 || ports[9099] != 30899 {
		t.Errorf("defaultPorts with only a start: %d ports, %v", len(ports), err)
	}
	if _, err := defaultPorts(ClusterManagerConfig{AdditionalOptions: map[string]interface{}{"albPortRangeStart": "x"}}); !errors.Is(err, kecscluster.ErrInvalidArgument) {
		t.Errorf("defaultPorts with a bad start: %v", err)
	}
}

// KECS's JSON names, both ways.
func TestJSONNames(t *testing.T) {
	var cfg ClusterManagerConfig
	doc := `{"provider":"k3d","containerMode":true,"kubeconfigPath":"/k","hostAddress":"h","additionalOptions":{"a":1},
		"volumeMounts":[{"hostPath":"/a","containerPath":"/b"}],"apiPort":1,"k3dImage":"i","enableRegistry":true,"registryPort":5000,"testMode":true}`
	if err := json.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	want := ClusterManagerConfig{Provider: "k3d", ContainerMode: true, KubeconfigPath: "/k", HostAddress: "h",
		AdditionalOptions: map[string]interface{}{"a": float64(1)}, VolumeMounts: []VolumeMount{{HostPath: "/a", ContainerPath: "/b"}},
		APIPort: 1, K3dImage: "i", EnableRegistry: true, RegistryPort: 5000, TestMode: true}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config = %+v", cfg)
	}
	b, err := json.Marshal(ClusterInfo{Metadata: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "status", "provider", "nodeCount", "version", "metadata", "kubeconfigPath", "apiPort", "traefikPort", "running"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("ClusterInfo JSON lacks %q: %s", k, b)
		}
	}
	if len(keys) != 10 {
		t.Errorf("ClusterInfo JSON has extra keys: %s", b)
	}
}

// The setters are safe during other calls (KECS's are not); run with -race.
func TestConcurrentSetters(t *testing.T) {
	m := newManager(t, &ClusterManagerConfig{KubeconfigPath: t.TempDir()})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				m.AddVolumeMount(VolumeMount{HostPath: fmt.Sprint("/h", i, j), ContainerPath: "/c"})
				m.SetEnableRegistry(j%2 == 0)
				m.SetTestMode(false)
				_ = m.snapshot()
				_ = m.GetHostKubeconfigPath("x")
			}
		}(i)
	}
	wg.Wait()
	if n := len(m.snapshot().VolumeMounts); n != 400 {
		t.Fatalf("%d volume mounts after 400 adds", n)
	}
	m.SetVolumeMounts(nil)
	if n := len(m.snapshot().VolumeMounts); n != 0 {
		t.Fatalf("%d volume mounts after SetVolumeMounts(nil)", n)
	}
}
