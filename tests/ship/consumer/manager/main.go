// Command manager is a hello world that creates a cluster manager: its size
// minus hello's is what the package adds to a Go binary. Built with
// CGO_ENABLED=0 it shows what a cgo-off caller gets: exit status 3 and
// ErrCgoRequired's message.
package main

import (
	"errors"
	"fmt"
	"os"

	kecscluster "github.com/kecs-cluster/kecs-cluster/bindings/go"
)

func main() {
	m, err := kecscluster.NewClusterManager(nil)
	if errors.Is(err, kecscluster.ErrCgoRequired) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer m.Close()
	fmt.Println("hello from kecs-cluster", kecscluster.Version())
}
