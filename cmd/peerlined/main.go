// Command peerlined is the peerline daemon: it builds a namespace, a
// WireGuard tunnel and a SIP/RTP rewriter per paired peer, and the phone
// lines on the phone port. The command line is pkg/daemon, the node it
// runs is built by pkg/node, and its core is pkg/supervisor.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/peerline/peerline/pkg/daemon"

	// Phone configs carry the time zone's rules; the appliance image has no
	// zoneinfo files, so the binary brings its own.
	_ "time/tzdata"
)

var version = "dev"

func main() {
	servePprof()
	if err := daemon.Main(context.Background(), os.Args[1:], version); err != nil {
		fmt.Fprintln(os.Stderr, "peerlined:", err)
		os.Exit(1)
	}
}
