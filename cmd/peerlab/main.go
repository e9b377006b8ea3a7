// Command peerlab builds the namespace lab and runs the demo (make demo).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/peerline/peerline/pkg/peerlab"
)

func main() {
	if err := peerlab.Main(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "peerlab:", err)
		os.Exit(1)
	}
}
