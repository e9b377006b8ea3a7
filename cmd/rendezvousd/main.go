// Command rendezvousd is the rendezvous server a user runs on a VPS: nodes
// register with it, it introduces paired nodes so they can punch a direct
// path, and relays their WireGuard packets when they cannot. See
// pkg/rvserver and pkg/rendezvous.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/peerline/peerline/pkg/rvserver"
)

var version = "dev"

func main() {
	if err := rvserver.Main(context.Background(), os.Args[1:], version, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "rendezvousd:", err)
		os.Exit(1)
	}
}
