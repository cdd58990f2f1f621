// Command kecs-bench-go is the Go side of the benchmark harness (see
// BENCHMARKS.md): it measures create/delete cycles, ClusterExists calls and the
// process's memory through the Go bindings, and prints one JSON document.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	kecscluster "github.com/kecs-cluster/kecs-cluster/bindings/go"
)

func rssKiB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return -1
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kecs-bench-go:", err)
	os.Exit(1)
}

func manager(image, dir string) *kecscluster.Manager {
	no := false
	m, err := kecscluster.NewClusterManager(&kecscluster.Config{Image: image, KubeconfigPath: dir, Privileged: &no})
	if err != nil {
		fail(err)
	}
	return m
}

func cycle(m *kecscluster.Manager, name string) (create, total time.Duration) {
	ctx := context.Background()
	start := time.Now()
	if err := m.CreateCluster(ctx, name); err != nil {
		fail(err)
	}
	create = time.Since(start)
	if err := m.DeleteCluster(ctx, name); err != nil {
		fail(err)
	}
	return create, time.Since(start)
}

// timeCalls times n calls of ClusterExists on a missing cluster ("exists") or of
// GetKubeconfigPath, which makes no Docker call ("path").
func timeCalls(m *kecscluster.Manager, what string, n int) []float64 {
	ctx := context.Background()
	samples := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		if what == "exists" {
			if _, err := m.ClusterExists(ctx, "bench-missing"); err != nil {
				fail(err)
			}
		} else if m.GetKubeconfigPath("bench-missing") == "" {
			fail(fmt.Errorf("GetKubeconfigPath failed"))
		}
		samples = append(samples, float64(time.Since(start).Nanoseconds()))
	}
	return samples
}

func main() {
	mode := flag.String("mode", "cycle", "cycle | serve | exists | probe | rss")
	what := flag.String("what", "exists", "probe: exists | path")
	n := flag.Int("n", 10, "repetitions")
	image := flag.String("image", "kecs-sim/k3s:test", "node image")
	dir := flag.String("kubeconfig-dir", os.TempDir(), "kubeconfig directory")
	prefix := flag.String("name", "gobench", "cluster name prefix")
	flag.Parse()
	out := map[string]any{}
	switch *mode {
	case "cycle":
		m := manager(*image, *dir)
		defer m.Close()
		var creates, totals []float64
		for i := 0; i < *n; i++ {
			c, t := cycle(m, fmt.Sprintf("%s%d", *prefix, i))
			creates = append(creates, float64(c.Microseconds())/1000)
			totals = append(totals, float64(t.Microseconds())/1000)
		}
		out["create_ms"], out["cycle_ms"] = creates, totals
	case "serve":
		// one warm manager; each stdin line "cycle NAME" answers one JSON line
		m := manager(*image, *dir)
		defer m.Close()
		in := bufio.NewScanner(os.Stdin)
		enc := json.NewEncoder(os.Stdout)
		for in.Scan() {
			f := strings.Fields(in.Text())
			if len(f) != 2 {
				fail(fmt.Errorf("bad command %q", in.Text()))
			}
			var answer any
			switch f[0] {
			case "cycle":
				c, t := cycle(m, f[1])
				answer = map[string]float64{"create_ms": float64(c.Microseconds()) / 1000, "cycle_ms": float64(t.Microseconds()) / 1000}
			case "exists", "path":
				n, _ := strconv.Atoi(f[1])
				answer = map[string][]float64{"ns": timeCalls(m, f[0], n)}
			default:
				fail(fmt.Errorf("bad command %q", in.Text()))
			}
			if err := enc.Encode(answer); err != nil {
				fail(err)
			}
		}
		return
	case "exists":
		m := manager(*image, *dir)
		defer m.Close()
		ctx := context.Background()
		for i := 0; i < 20; i++ { // warm up: connect, negotiate
			if _, err := m.ClusterExists(ctx, "bench-missing"); err != nil {
				fail(err)
			}
		}
		var samples []float64
		for i := 0; i < *n; i++ {
			start := time.Now()
			if _, err := m.ClusterExists(ctx, "bench-missing"); err != nil {
				fail(err)
			}
			samples = append(samples, float64(time.Since(start).Nanoseconds()))
		}
		out["exists_ns"] = samples
	case "probe":
		// a fixed number of calls and nothing else (no timing, no output), so
		// callgrind's instruction count of the process is the calls' cost plus
		// a constant the harness subtracts (two runs, different -n)
		m := manager(*image, *dir)
		defer m.Close()
		ctx := context.Background()
		for i := 0; i < 20; i++ {
			if _, err := m.ClusterExists(ctx, "bench-missing"); err != nil {
				fail(err)
			}
		}
		for i := 0; i < *n; i++ {
			switch *what {
			case "exists":
				if _, err := m.ClusterExists(ctx, "bench-missing"); err != nil {
					fail(err)
				}
			case "path":
				if m.GetKubeconfigPath("bench-missing") == "" {
					fail(fmt.Errorf("GetKubeconfigPath failed"))
				}
			default:
				fail(fmt.Errorf("unknown -what %q", *what))
			}
		}
		return
	case "rss":
		before := rssKiB()
		m := manager(*image, *dir)
		if _, err := m.ClusterExists(context.Background(), "bench-missing"); err != nil {
			fail(err)
		}
		idle := rssKiB()
		cycle(m, *prefix+"warm")
		warm := rssKiB()
		for i := 0; i < *n; i++ {
			cycle(m, fmt.Sprintf("%s%d", *prefix, i))
		}
		after := rssKiB()
		_ = m.Close()
		out["rss_kib"] = map[string]int64{"before": before, "idle": idle, "warm": warm, "after": after}
	default:
		fail(fmt.Errorf("unknown mode %q", *mode))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}
