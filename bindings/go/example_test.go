package kecscluster_test

// Runnable examples: `go test` runs them against the real Docker Engine and
// compares their output. Images, privileged mode and the provider come from
// the environment, as for any program using the package; CI (tests/run-all.sh)
// points KECS_K3S_IMAGE / KECS_LB_IMAGE at the node and load-balancer
// simulators and sets KECS_PRIVILEGED=false.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	kecscluster "github.com/kecs-cluster/kecs-cluster/bindings/go"
)

// A cluster's whole life: create, read its kubeconfig, delete.
func Example() {
	// Kubeconfig files go to a directory of our own here; the default is ~/.kube.
	dir, err := os.MkdirTemp("", "kecs-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	m, err := kecscluster.NewClusterManager(&kecscluster.Config{KubeconfigPath: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	// The context bounds the create; cancelling it stops the create, which then
	// removes everything it made.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	name := fmt.Sprintf("example-%d", os.Getpid())
	if err := m.CreateClusterWithOptions(ctx, name, &kecscluster.CreateOptions{Agents: 1}); err != nil {
		fmt.Println("create:", err)
		return
	}
	// Also when a step below fails; deleting a missing cluster is not an error.
	defer m.DeleteCluster(context.Background(), name)

	info, err := m.GetClusterInfo(ctx, name)
	if err != nil {
		fmt.Println("info:", err)
		return
	}
	roles := map[string]int{}
	for _, n := range info.Nodes {
		roles[n.Role]++
	}
	fmt.Println("cluster:", info.Name == "kecs-"+name, info.Status, roles)

	// The kubeconfig as YAML (client-go: clientcmd.RESTConfigFromKubeConfig), and
	// the same written to <dir>/<cluster>.config for kubectl --kubeconfig.
	yaml, err := m.GetKubeconfig(ctx, name)
	if err != nil {
		fmt.Println("kubeconfig:", err)
		return
	}
	fmt.Println("kubeconfig names the cluster:", strings.Contains(string(yaml), info.Name))
	fmt.Println("kubeconfig file:", filepath.Base(m.GetKubeconfigPath(name)) == info.Name+".config")

	if err := m.DeleteCluster(ctx, name); err != nil {
		fmt.Println("delete:", err)
		return
	}
	exists, err := m.ClusterExists(ctx, name)
	fmt.Println("exists after delete:", exists, err)
	// Output:
	// cluster: true running map[agent:1 loadbalancer:1 server:1]
	// kubeconfig names the cluster: true
	// kubeconfig file: true
	// exists after delete: false <nil>
}

// Names get the prefix "kecs-" once; nothing talks to Docker until a call needs it.
func ExampleNewClusterManager() {
	m, err := kecscluster.NewClusterManager(&kecscluster.Config{KubeconfigPath: "/srv/kubeconfigs"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	fmt.Println(m.GetKubeconfigPath("web"))
	fmt.Println(m.GetKubeconfigPath("kecs-web"))
	// Output:
	// /srv/kubeconfigs/kecs-web.config
	// /srv/kubeconfigs/kecs-web.config
}

// Errors carry the library's code; errors.Is matches them against the sentinels.
func ExampleManager_GetClusterInfo_notFound() {
	m, err := kecscluster.NewClusterManager(&kecscluster.Config{KubeconfigPath: os.TempDir()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	_, err = m.GetClusterInfo(context.Background(), "no-such-cluster")
	fmt.Println("not found:", errors.Is(err, kecscluster.ErrNotFound))
	var kerr *kecscluster.Error
	if errors.As(err, &kerr) {
		fmt.Println("code:", kerr.Code)
	}

	// A call whose context has ended does not start, and says why.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = m.CreateCluster(ctx, "never-created")
	fmt.Println("cancelled:", errors.Is(err, kecscluster.ErrCancelled), errors.Is(err, context.Canceled))
	// Output:
	// not found: true
	// code: not found
	// cancelled: true true
}
