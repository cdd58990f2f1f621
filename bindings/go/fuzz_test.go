//go:build cgo

package kecscluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

// FuzzConfigAndNames sends arbitrary configuration values, cluster names and
// create options through the C ABI. Every call must end in a result or a
// typed *Error; a panic inside the library (CodePanic) or a crash fails. No
// cluster can be made: the engine address is a loopback port that refuses.
// CI runs it for a bounded time (tests/run-all.sh); plain `go test` runs the
// seeds below.
func FuzzConfigAndNames(f *testing.F) {
	f.Add("k3d", "web", "kecs-", "127.0.0.1", "rancher/k3s:v1.31.4-k3s1", "--disable=traefik@server:*", "K", "V", 2)
	f.Add("kind", "a-b", "", "::1", "kindest/node:v1.31.4", "", "", "", 0)
	f.Add("", "", "x", "0.0.0.0", "", "@agent:9", "=", "\x00", -1)
	f.Add("K3D", "UPPER_case", "-bad-", "not-an-ip", "img@sha256:zz", "--k3s-arg", "PATH", "a\nb", 1<<30)
	f.Add("kind", "\xff\xfe", "kecs-", "127.0.0.1", "bad image name", "--x@server:*;rm -rf /", "K=V", "", 3)
	f.Add("k3d", "this-cluster-name-is-far-too-long-for-k3d-and-kind", "kecs-", "", "", "", "", "", 1)
	f.Fuzz(func(t *testing.T, provider, name, prefix, apiHostIP, image, k3sArg, envKey, envVal string, agents int) {
		cfg := &Config{
			Provider:       provider,
			NamePrefix:     &prefix,
			APIHostIP:      apiHostIP,
			Image:          image,
			DockerHost:     "tcp://127.0.0.1:1",
			KubeconfigPath: t.TempDir(),
		}
		m, err := NewClusterManager(cfg)
		if err != nil {
			requireTypedError(t, err)
			return
		}
		defer m.Close()
		_ = m.GetKubeconfigPath(name)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		opts := &CreateOptions{
			Agents:  agents % 4,
			Image:   image,
			K3sArgs: []string{k3sArg},
			Env:     map[string]string{envKey: envVal},
		}
		err = m.CreateClusterWithOptions(ctx, name, opts)
		if err == nil {
			t.Fatalf("a create succeeded with the engine unreachable (name %q)", name)
		}
		requireTypedError(t, err)
		_, err = m.ClusterExists(ctx, name)
		if err != nil {
			requireTypedError(t, err)
		}
	})
}

func requireTypedError(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("untyped error %T: %v", err, err)
	}
	if e.Code == CodePanic {
		t.Fatalf("the library panicked: %v", err)
	}
}
