//go:build !cgo

package kecscluster

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// Run with CGO_ENABLED=0 go test -run WithoutCgo . (tests/ship/run.sh does): the
// package compiles without cgo and says what to do instead of failing later.
func TestWithoutCgoNewClusterManagerSaysCgoRequired(t *testing.T) {
	m, err := NewClusterManager(nil)
	if m != nil || !errors.Is(err, ErrCgoRequired) {
		t.Fatalf("NewClusterManager without cgo = %v, %v; want nil and ErrCgoRequired", m, err)
	}
	if !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Errorf("the error does not say how to build with cgo: %v", err)
	}
	var zero *Manager
	if err := zero.CreateCluster(context.Background(), "x"); !errors.Is(err, ErrCgoRequired) {
		t.Errorf("CreateCluster without cgo = %v, want ErrCgoRequired", err)
	}
}
