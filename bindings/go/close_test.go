package kecscluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// Close during a CreateCluster: the create is cancelled (ErrCancelled, not the
// caller's context), Close returns only once its rollback has finished, and
// nothing of the cluster is left.
func TestCloseDuringCreate(t *testing.T) {
	cfg := testConfig(t)
	m, err := NewClusterManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	name := uniqueName("cl")
	full := "kecs-" + name
	cleanupCluster(t, cfg, full)
	created := make(chan error, 1)
	go func() {
		// the nodes take 30 s to be ready: the create is still running at Close
		created <- m.CreateClusterWithOptions(context.Background(), name,
			&CreateOptions{Agents: 2, Env: map[string]string{"SIM_READY_DELAY_MS": "30000"}})
	}()
	if err := waitForFirstNode(full, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// two Closes at once: both return once the rollback is done
	start := time.Now()
	var closes sync.WaitGroup
	for i := 0; i < 2; i++ {
		closes.Add(1)
		go func() {
			defer closes.Done()
			if err := m.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
	}
	closes.Wait()
	t.Logf("Close returned after %v", time.Since(start))
	// checked the moment Close returned: the rollback is over
	if left := leftovers(t, full); len(left) != 0 {
		t.Fatalf("left in Docker after Close returned: %v", left)
	}
	select {
	case err = <-created:
	case <-time.After(10 * time.Second):
		t.Fatal("CreateCluster did not return after Close")
	}
	if !errors.Is(err, ErrCancelled) {
		t.Fatalf("CreateCluster during Close: err = %v, want ErrCancelled", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Fatalf("the caller's context was not cancelled, but the error says so: %v", err)
	}
	if !strings.Contains(err.Error(), "Close") {
		t.Fatalf("the error does not say Close cancelled the call: %v", err)
	}
	// calls after Close fail at once
	if _, err := m.ClusterExists(context.Background(), name); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("call after Close: %v", err)
	}
	// a fresh manager agrees nothing is there
	fresh := newManager(t, cfg)
	if ok, err := fresh.ClusterExists(context.Background(), name); err != nil || ok {
		t.Fatalf("exists after Close: %v, %v", ok, err)
	}
	list, err := fresh.ListClusters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.Name == full {
			t.Fatalf("listed after Close: %+v", c)
		}
	}
}

// Calls waiting for a Close to finish do not queue behind it: they fail at once.
func TestCallsDuringCloseFailAtOnce(t *testing.T) {
	m, err := NewClusterManager(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := m.CreateCluster(context.Background(), "after-close"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("CreateCluster after Close: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
}
