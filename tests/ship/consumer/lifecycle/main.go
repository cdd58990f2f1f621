// Command lifecycle is what KECS's control plane does with the package, as a
// program in another module: create a cluster, read its kubeconfig, list its
// nodes, delete it. tests/ship/run.sh runs it as a fully static binary alone in
// an empty image, in container mode; the configuration comes from the
// environment (nil Config), as in KECS.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	kecscluster "github.com/kecs-cluster/kecs-cluster/bindings/go"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: lifecycle <cluster-name>")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "lifecycle:", err)
		if errors.Is(err, kecscluster.ErrCgoRequired) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

func run(name string) (err error) {
	m, err := kecscluster.NewClusterManager(nil)
	if err != nil {
		return err
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// delete even when a later step fails, with its own deadline
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
		defer dcancel()
		if derr := m.DeleteCluster(dctx, name); derr != nil && err == nil {
			err = fmt.Errorf("deleting: %w", derr)
		} else if derr == nil && err == nil {
			exists, xerr := m.ClusterExists(dctx, name)
			switch {
			case xerr != nil:
				err = fmt.Errorf("checking the delete: %w", xerr)
			case exists:
				err = errors.New("the cluster still exists after DeleteCluster")
			default:
				fmt.Println("deleted", name)
			}
		}
	}()

	if err := m.CreateCluster(ctx, name); err != nil {
		return fmt.Errorf("creating: %w", err)
	}
	fmt.Println("created", name)

	kubeconfig, err := m.GetKubeconfig(ctx, name)
	if err != nil {
		return fmt.Errorf("reading the kubeconfig: %w", err)
	}
	server := ""
	for _, line := range strings.Split(string(kubeconfig), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "server: "); ok {
			server = s
		}
	}
	if server == "" {
		return fmt.Errorf("the kubeconfig has no server:\n%s", kubeconfig)
	}
	fmt.Println("kubeconfig server", server)
	onDisk, err := os.ReadFile(m.GetKubeconfigPath(name))
	if err != nil {
		return fmt.Errorf("reading the kubeconfig file: %w", err)
	}
	fmt.Printf("kubeconfig file %s (%d bytes)\n", m.GetKubeconfigPath(name), len(onDisk))

	info, err := m.GetClusterInfo(ctx, name)
	if err != nil {
		return fmt.Errorf("reading the cluster info: %w", err)
	}
	if len(info.Nodes) == 0 {
		return errors.New("the cluster info lists no nodes")
	}
	for _, n := range info.Nodes {
		fmt.Printf("node %s %s %s\n", n.Name, n.Role, n.State)
	}
	return nil
}
