//go:build cgo

package kecscluster

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestSoak runs $KECS_SOAK_CYCLES create/delete cycles (CI: 200) through the Go
// bindings in one process and one Manager, and asserts that the process does
// not grow with them. Bounds, measured against the process after 10 warm-up
// cycles (a new runtime, TLS and connection pools reach their steady state):
//   - open file descriptors: at most +8
//   - OS threads: at most +8
//   - resident memory: at most +15 %
//
// and that no Docker object of any cycle's cluster is left. It is a test with
// bounds, not a benchmark; plain `go test` skips it (it takes minutes), CI runs
// it as its own step.
func TestSoak(t *testing.T) {
	cycles, _ := strconv.Atoi(os.Getenv("KECS_SOAK_CYCLES"))
	if cycles <= 0 {
		t.Skip("set KECS_SOAK_CYCLES (CI: 200) to run the soak test")
	}
	const warmup = 10
	cfg := testConfig(t)
	m := newManager(t, cfg)
	ctx := context.Background()
	var names []string
	cycle := func() {
		name := uniqueName("soak")
		names = append(names, "kecs-"+name)
		cleanupCluster(t, cfg, name)
		if err := m.CreateCluster(ctx, name); err != nil {
			t.Fatalf("cycle %d: create: %v", len(names), err)
		}
		if err := m.DeleteCluster(ctx, name); err != nil {
			t.Fatalf("cycle %d: delete: %v", len(names), err)
		}
	}
	for i := 0; i < warmup; i++ {
		cycle()
	}
	fds0, threads0, rss0 := processStats(t)
	for i := 0; i < cycles; i++ {
		cycle()
	}
	fds, threads, rss := processStats(t)
	t.Logf("after %d cycles: fds %d → %d, threads %d → %d, RSS %d → %d kB", cycles, fds0, fds, threads0, threads, rss0, rss)
	if fds > fds0+8 {
		t.Errorf("open file descriptors grew from %d to %d", fds0, fds)
	}
	if threads > threads0+8 {
		t.Errorf("threads grew from %d to %d", threads0, threads)
	}
	if float64(rss) > float64(rss0)*1.15 {
		t.Errorf("RSS grew from %d kB to %d kB (more than 15 %%)", rss0, rss)
	}
	for _, full := range names {
		if left := leftovers(t, full); len(left) > 0 {
			t.Errorf("cluster %s left %v", full, left)
		}
	}
}

// processStats reads this process's open descriptors, threads and resident
// memory (kB) from /proc.
func processStats(t *testing.T) (fds, threads, rssKB int) {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("reading /proc/self/fd: %v", err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("reading /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "Threads:":
			threads, _ = strconv.Atoi(fields[1])
		case "VmRSS:":
			rssKB, _ = strconv.Atoi(fields[1])
		}
	}
	return len(entries), threads, rssKB
}
