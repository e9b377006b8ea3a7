// Command peerline is the administrator's view of a running peerlined:
// status, peers, phones. It talks to the daemon over its control socket; see
// pkg/cli.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/peerline/peerline/pkg/cli"
)

var version = "dev"

func main() {
	if err := cli.Main(context.Background(), os.Args[1:], os.Stdout, version); err != nil {
		if !errors.Is(err, cli.ErrUsage) {
			fmt.Fprintln(os.Stderr, "peerline:", err)
		}
		os.Exit(cli.ExitCode(err))
	}
}
