package k3dcompat

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// These tests drive the real Docker Engine with the simulator images: nodes
// from tests/node-sim/build-image.sh, the load balancer from
// tests/lb-sim/build-image.sh.
const (
	simImage   = "kecs-sim/k3s:test"
	simLBImage = "kecs-sim/k3d-proxy:test"
)

func TestMain(m *testing.M) {
	// The library reads the load balancer image and privileged mode from the
	// environment, as KECS's deployments set them; this engine refuses
	// privileged containers.
	if os.Getenv("KECS_LB_IMAGE") == "" {
		os.Setenv("KECS_LB_IMAGE", simLBImage)
	}
	// the real distribution registry, packaged from Debian (tests/registry)
	if os.Getenv("KECS_REGISTRY_IMAGE") == "" {
		os.Setenv("KECS_REGISTRY_IMAGE", "kecs-sim/registry:test")
	}
	if os.Getenv("KECS_TEST_PRIVILEGED") != "1" {
		os.Setenv("KECS_PRIVILEGED", "false")
	}
	os.Exit(m.Run())
}

var counter atomic.Int64

// uniqueName is an instance name (no kecs- prefix) unique to this run.
func uniqueName(tag string) string {
	return fmt.Sprintf("k3dc%s%d%d", tag, os.Getpid()%100000, counter.Add(1))
}

// requireImages fails (never skips) when Docker or an image is missing.
func requireImages(t *testing.T) {
	t.Helper()
	for _, img := range []string{simImage, os.Getenv("KECS_LB_IMAGE")} {
		resp, err := dockerClient().Get("http://docker/images/" + img + "/json")
		if err != nil {
			t.Fatalf("these tests need a running Docker Engine: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("image %s is missing (HTTP %d): run tests/node-sim/build-image.sh and tests/lb-sim/build-image.sh", img, resp.StatusCode)
		}
	}
}

func testConfig(t *testing.T) *ClusterManagerConfig {
	t.Helper()
	return &ClusterManagerConfig{
		Provider:       "k3d",
		ContainerMode:  false,
		KubeconfigPath: t.TempDir(),
		K3dImage:       simImage,
	}
}

func newManager(t *testing.T, cfg *ClusterManagerConfig) *K3dClusterManager {
	t.Helper()
	m, err := NewK3dClusterManager(cfg)
	if err != nil {
		t.Fatalf("NewK3dClusterManager: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// cleanupCluster deletes the cluster when the test ends, passed or failed.
func cleanupCluster(t *testing.T, cfg *ClusterManagerConfig, name string) {
	t.Cleanup(func() {
		m, err := NewK3dClusterManager(cfg)
		if err != nil {
			return
		}
		defer m.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.DeleteCluster(ctx, name); err != nil {
			t.Errorf("cleanup of %s: %v", name, err)
		}
	})
}

// freePorts picks n distinct host ports nothing listens on (0.0.0.0).
// registryRunning reports whether KECS's shared registry container exists and runs.
func registryRunning(t *testing.T) (exists, running bool) {
	t.Helper()
	resp, err := dockerClient().Get("http://docker/containers/kecs-registry/json")
	if err != nil {
		t.Fatalf("inspecting kecs-registry: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return false, false
	}
	var c struct{ State struct{ Running bool } }
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatalf("decoding kecs-registry: %v", err)
	}
	return true, c.State.Running
}

// removeRegistryAfter removes kecs-registry when the test ends, unless it was
// there before (then it is someone else's and stays).
func removeRegistryAfter(t *testing.T) {
	t.Helper()
	if existed, _ := registryRunning(t); existed {
		return
	}
	t.Cleanup(func() {
		for _, path := range []string{"/containers/kecs-registry?force=1&v=1", "/volumes/kecs-registry-data"} {
			req, _ := http.NewRequest(http.MethodDelete, "http://docker"+path, nil)
			if resp, err := dockerClient().Do(req); err == nil {
				resp.Body.Close()
			}
		}
	})
}

func freePorts(t *testing.T, n int) []int32 {
	t.Helper()
	var ports []int32
	var ls []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, int32(l.Addr().(*net.TCPAddr).Port))
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// dockerClient talks to the Docker Engine API over its Unix socket.
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

func dockerGet(t *testing.T, path string, out any) {
	t.Helper()
	resp, err := dockerClient().Get("http://docker" + path)
	if err != nil {
		t.Fatalf("these tests need a running Docker Engine: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("docker GET %s: HTTP %d: %s", path, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
}

// containerInspect is the part of Docker's container inspect the tests read.
type containerInspect struct {
	Config struct {
		Cmd    []string
		Env    []string
		Labels map[string]string
	}
	HostConfig struct {
		PortBindings map[string][]struct{ HostIp, HostPort string }
	}
	Mounts []struct {
		Type, Source, Destination string
	}
	State struct{ Running bool }
}

func inspect(t *testing.T, container string) containerInspect {
	t.Helper()
	var c containerInspect
	dockerGet(t, "/containers/"+container+"/json", &c)
	return c
}

// leftovers lists what Docker still holds of cluster `full`: containers by
// label, its network, volumes named after it.
func leftovers(t *testing.T, full string) []string {
	t.Helper()
	var out []string
	var containers []struct{ Names []string }
	filter := url.QueryEscape(fmt.Sprintf(`{"label":["k3d.cluster=%s"]}`, full))
	dockerGet(t, "/containers/json?all=1&filters="+filter, &containers)
	for _, c := range containers {
		out = append(out, "container "+strings.Join(c.Names, ","))
	}
	var networks []struct{ Name string }
	dockerGet(t, "/networks", &networks)
	for _, n := range networks {
		if n.Name == "k3d-"+full {
			out = append(out, "network "+n.Name)
		}
	}
	var volumes struct {
		Volumes []struct {
			Name   string
			Labels map[string]string
		}
	}
	dockerGet(t, "/volumes", &volumes)
	for _, v := range volumes.Volumes {
		if strings.Contains(v.Name, full+"-") || strings.HasSuffix(v.Name, full) || v.Labels["k3d.cluster"] == full {
			out = append(out, "volume "+v.Name)
		}
	}
	return out
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

// kubeAPI is a client for the cluster's API built from its kubeconfig with
// crypto/tls and net/http only, as client-go would connect.
type kubeAPI struct {
	server string
	client *http.Client
}

func newKubeAPI(t *testing.T, kubeconfig []byte) *kubeAPI {
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
	return &kubeAPI{
		server: kubeconfigField(t, kubeconfig, "server"),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
		}},
	}
}

// do sends a request and returns the status and body.
func (k *kubeAPI) do(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, k.server+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// httpAnswer GETs http://127.0.0.1:<port>/ until it answers 200 or the
// deadline passes (the node opens the NodePort listener once it sees the
// Service), returning the body.
func httpAnswer(t *testing.T, port int32, within time.Duration) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(within)
	retry := time.NewTicker(200 * time.Millisecond)
	defer retry.Stop()
	var last error
	for {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return strings.TrimSpace(string(b))
			}
			last = fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
		} else {
			last = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("host port %d did not answer within %v: %v", port, within, last)
		}
		<-retry.C
	}
}

// containerLogs is the tail of a container's output, for failure messages.
func containerLogs(t *testing.T, container string) string {
	t.Helper()
	resp, err := dockerClient().Get("http://docker/containers/" + container + "/logs?stdout=1&stderr=1&timestamps=1&tail=40")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var state struct{ State struct{ StartedAt string } }
	dockerGet(t, "/containers/"+container+"/json", &state)
	return fmt.Sprintf("%s (started at %s) logged:\n%s", container, state.State.StartedAt, b)
}
