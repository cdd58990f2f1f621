package kecscluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// These tests drive the real Docker Engine with the node simulator image
// (kecs-sim/k3s:test, built by tests/node-sim/build-image.sh).

const (
	simImage     = "kecs-sim/k3s:test"
	simKindImage = "kecs-sim/kind-node:test"
)

var counter atomic.Int64

func uniqueName(tag string) string {
	return fmt.Sprintf("go%s%d%d", tag, os.Getpid()%100000, counter.Add(1))
}

func boolPtr(b bool) *bool { return &b }

func testConfig(t *testing.T) *Config {
	t.Helper()
	return &Config{
		Image:          simImage,
		KubeconfigPath: t.TempDir(),
		Privileged:     boolPtr(os.Getenv("KECS_TEST_PRIVILEGED") == "1"),
	}
}

func newManager(t *testing.T, cfg *Config) *Manager {
	t.Helper()
	m, err := NewClusterManager(cfg)
	if err != nil {
		t.Fatalf("NewClusterManager: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// cleanupCluster deletes the cluster when the test ends, passed or failed.
func cleanupCluster(t *testing.T, cfg *Config, name string) {
	t.Cleanup(func() {
		m, err := NewClusterManager(cfg)
		if err != nil {
			return
		}
		defer m.Close()
		_ = m.DeleteCluster(context.Background(), name)
	})
}

// dockerClient talks to the Docker Engine API directly over its Unix socket.
func dockerClient() *http.Client {
	sock := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		sock = strings.TrimPrefix(h, "unix://")
	}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

// dockerGet queries the Docker Engine API directly.
func dockerGet(t *testing.T, path string, out any) {
	t.Helper()
	resp, err := dockerClient().Get("http://docker" + path)
	if err != nil {
		t.Fatalf("these tests need a running Docker Engine: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
}

// leftovers lists Docker objects of cluster `full` (containers by label, the network by name).
func leftovers(t *testing.T, full string) []string {
	t.Helper()
	var out []string
	for _, label := range []string{"k3d.cluster", "io.x-k8s.kind.cluster"} {
		var containers []struct{ Names []string }
		filter := url.QueryEscape(fmt.Sprintf(`{"label":["%s=%s"]}`, label, full))
		dockerGet(t, "/containers/json?all=1&filters="+filter, &containers)
		for _, c := range containers {
			out = append(out, "container "+strings.Join(c.Names, ","))
		}
	}
	var networks []struct{ Name string }
	dockerGet(t, "/networks", &networks)
	for _, n := range networks {
		if n.Name == "k3d-"+full {
			out = append(out, "network "+n.Name)
		}
	}
	return out
}

// waitForFirstNode waits, on Docker's event stream, until the first node container
// of cluster `full` has been created. Events are asked for from a little before
// the call, so a creation that raced the subscription is still seen.
func waitForFirstNode(full string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	filters := url.QueryEscape(`{"type":["container"],"event":["create"]}`)
	since := time.Now().Add(-2 * time.Second).Unix()
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://docker/events?since=%d&filters=%s", since, filters), nil)
	if err != nil {
		return err
	}
	resp, err := dockerClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev struct {
			Actor struct{ Attributes map[string]string }
		}
		if err := dec.Decode(&ev); err != nil {
			return fmt.Errorf("no node of %s created within %v: %w", full, limit, err)
		}
		a := ev.Actor.Attributes
		if a["k3d.cluster"] == full || a["io.x-k8s.kind.cluster"] == full {
			return nil
		}
	}
}

// kubeconfigField reads one plain scalar from a kubeconfig the library wrote.
func kubeconfigField(t *testing.T, yaml []byte, key string) string {
	t.Helper()
	for _, line := range strings.Split(string(yaml), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+": "); ok {
			return strings.Trim(v, `"'`)
		}
	}
	t.Fatalf("kubeconfig has no %s", key)
	return ""
}

// listNodes lists nodes with Go's own crypto/tls and net/http, as client-go would.
func listNodes(t *testing.T, kubeconfig []byte) []string {
	t.Helper()
	decode := func(key string) []byte {
		b, err := base64.StdEncoding.DecodeString(kubeconfigField(t, kubeconfig, key))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		return b
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(decode("certificate-authority-data")) {
		t.Fatal("no CA in kubeconfig")
	}
	cert, err := tls.X509KeyPair(decode("client-certificate-data"), decode("client-key-data"))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	resp, err := client.Get(kubeconfigField(t, kubeconfig, "server") + "/api/v1/nodes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct {
				Conditions []struct{ Type, Status string }
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	var ready []string
	for _, n := range list.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				ready = append(ready, n.Metadata.Name)
			}
		}
	}
	return ready
}

func lifecycle(t *testing.T, provider string) {
	cfg := testConfig(t)
	cfg.Provider = provider
	if provider == "kind" {
		cfg.Image = simKindImage
	}
	m := newManager(t, cfg)
	ctx := context.Background()
	name := uniqueName("lc")
	full := "kecs-" + name
	cleanupCluster(t, cfg, full)

	if err := m.CreateClusterWithOptions(ctx, name, &CreateOptions{Agents: 2, Timeout: time.Minute}); err != nil {
		t.Fatalf("create: %v", err)
	}
	if ok, err := m.ClusterExists(ctx, name); err != nil || !ok {
		t.Fatalf("exists = %v, %v", ok, err)
	}
	if err := m.WaitForClusterReadyContext(ctx, name); err != nil {
		t.Fatalf("wait: %v", err)
	}
	kc, err := m.GetKubeconfig(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if nodes := listNodes(t, kc); len(nodes) != 3 {
		t.Fatalf("ready nodes %v, want 3", nodes)
	}
	info, err := m.GetClusterInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != full || info.Status != "running" || info.NodeCount != 3 || info.Provider != provider || !strings.HasPrefix(info.Version, "v1.") {
		t.Fatalf("info %+v", info)
	}
	list, err := m.ListClusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range list {
		found = found || c.Name == full
	}
	if !found {
		t.Fatalf("list %+v misses %s", list, full)
	}
	if err := m.DeleteCluster(ctx, name); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, full); len(left) != 0 {
		t.Fatalf("left in Docker: %v", left)
	}
	if _, err := m.GetClusterInfo(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("info after delete: %v", err)
	}
}

func TestLifecycle(t *testing.T) { lifecycle(t, "k3d") }

func TestLifecycleKind(t *testing.T) { lifecycle(t, "kind") }

func TestKECSStyleFlows(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KECS_K3S_IMAGE", simImage)
	t.Setenv("KECS_KUBECONFIG_PATH", dir)
	t.Setenv("KECS_CLUSTER_PROVIDER", "")
	if os.Getenv("KECS_TEST_PRIVILEGED") != "1" {
		t.Setenv("KECS_PRIVILEGED", "false")
	}
	m := newManager(t, nil) // nil config: defaults plus the environment, as in KECS
	ctx := context.Background()
	name := uniqueName("kf")
	cleanupCluster(t, &Config{KubeconfigPath: dir, Image: simImage, Privileged: boolPtr(false)}, "kecs-"+name)

	path := m.GetKubeconfigPath(name)
	if path != dir+"/kecs-"+name+".config" || m.GetKubeconfigPath("kecs-"+name) != path {
		t.Fatalf("GetKubeconfigPath = %q", path)
	}
	for i := 0; i < 2; i++ { // create twice: idempotent
		if err := m.CreateCluster(ctx, name); err != nil {
			t.Fatalf("create #%d: %v", i+1, err)
		}
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("kubeconfig missing after create: %v", err)
	}
	if ok, _ := m.ClusterExists(ctx, "kecs-"+name); !ok {
		t.Fatal("the prefixed name does not find the cluster")
	}
	if err := m.WaitForClusterReady(name, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // delete twice: idempotent
		if err := m.DeleteCluster(ctx, "kecs-"+name); err != nil {
			t.Fatalf("delete #%d: %v", i+1, err)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("kubeconfig still there after delete: %v", err)
	}
	if ok, _ := m.ClusterExists(ctx, name); ok {
		t.Fatal("exists after delete")
	}
}

func TestCancelDuringCreate(t *testing.T) {
	cfg := testConfig(t)
	m := newManager(t, cfg)
	name := uniqueName("cc")
	cleanupCluster(t, cfg, "kecs-"+name)
	ctx, cancel := context.WithCancel(context.Background())
	var cancelledAt time.Time
	go func() {
		// cancel once the first node exists
		if err := waitForFirstNode("kecs-"+name, 30*time.Second); err != nil {
			t.Error(err)
		}
		cancelledAt = time.Now()
		cancel()
	}()
	err := m.CreateClusterWithOptions(ctx, name, &CreateOptions{Env: map[string]string{"SIM_READY_DELAY_MS": "30000"}})
	returned := time.Now()
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrCancelled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := returned.Sub(cancelledAt); d > time.Second {
		t.Fatalf("returned %v after cancel", d)
	}
	if left := leftovers(t, "kecs-"+name); len(left) != 0 {
		t.Fatalf("left in Docker: %v", left)
	}
	// an already-cancelled context fails at once
	if err := m.CreateCluster(ctx, name); !errors.Is(err, context.Canceled) {
		t.Fatalf("pre-cancelled: %v", err)
	}
}

func TestDeadlineDuringWait(t *testing.T) {
	cfg := testConfig(t)
	m := newManager(t, cfg)
	name := uniqueName("dl")
	cleanupCluster(t, cfg, "kecs-"+name)
	// agent-0 never becomes ready; NoWait returns once server-0 is up
	opts := &CreateOptions{Agents: 1, NoWait: true, Env: map[string]string{"SIM_NEVER_READY": "agent-0"}}
	if err := m.CreateClusterWithOptions(context.Background(), name, opts); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := m.WaitForClusterReadyContext(ctx, name)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("wait returned after %v", d)
	}
	// the library's own timeout matches ErrTimeout and DeadlineExceeded
	err = m.WaitForClusterReady(name, 300*time.Millisecond)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if err := m.DeleteCluster(context.Background(), name); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsIs(t *testing.T) {
	cfg := testConfig(t)
	m := newManager(t, cfg)
	ctx := context.Background()
	err := m.CreateCluster(ctx, "Not_Valid")
	var e *Error
	if !errors.Is(err, ErrInvalidArgument) || !errors.As(err, &e) || e.Op != "CreateCluster" || e.Cluster != "Not_Valid" {
		t.Fatalf("invalid name: %v", err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Fatal("matched the wrong sentinel")
	}
	missing := testConfig(t)
	missing.Image = "kecs-sim/does-not-exist:never"
	name := uniqueName("mi")
	err = newManager(t, missing).CreateCluster(ctx, name)
	if !errors.Is(err, ErrImageUnavailable) {
		t.Fatalf("missing image: %v", err)
	}
	if left := leftovers(t, "kecs-"+name); len(left) != 0 {
		t.Fatalf("left in Docker: %v", left)
	}
	unreachable := testConfig(t)
	unreachable.DockerHost = "tcp://127.0.0.1:1"
	start := time.Now()
	_, err = newManager(t, unreachable).ClusterExists(ctx, "web")
	if !errors.Is(err, ErrDockerUnavailable) || time.Since(start) > 2*time.Second {
		t.Fatalf("unreachable Docker: %v after %v", err, time.Since(start))
	}
	if _, err := NewClusterManager(&Config{Provider: "minikube"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad provider: %v", err)
	}
}

func TestEightGoroutines(t *testing.T) {
	cfg := testConfig(t)
	m := newManager(t, cfg)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		name := uniqueName("g")
		cleanupCluster(t, cfg, "kecs-"+name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			if err := m.CreateCluster(ctx, name); err != nil {
				errs <- err
				return
			}
			if ok, err := m.ClusterExists(ctx, name); err != nil || !ok {
				errs <- fmt.Errorf("%s exists=%v err=%v", name, ok, err)
			}
			if err := m.DeleteCluster(ctx, name); err != nil {
				errs <- err
			}
			if left := leftovers(t, "kecs-"+name); len(left) != 0 {
				errs <- fmt.Errorf("%s left %v", name, left)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCloseRacesCalls(t *testing.T) {
	m, err := NewClusterManager(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	var wg, started sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if j == 1 {
					started.Done()
				}
				_, err := m.ClusterExists(context.Background(), "nope")
				// a call Close finds in flight is cancelled; one made after is refused
				if err != nil && !errors.Is(err, ErrInvalidArgument) && !errors.Is(err, ErrCancelled) {
					t.Errorf("unexpected error: %v", err)
				}
				_ = m.GetKubeconfigPath("nope")
			}
		}()
	}
	started.Wait() // every goroutine has made a call; Close now races the rest
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := m.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if _, err := m.ClusterExists(context.Background(), "x"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("call after Close: %v", err)
	}
}

func TestVersion(t *testing.T) {
	if v := Version(); !strings.HasPrefix(v, "0.") {
		t.Fatalf("Version() = %q", v)
	}
}
