package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// servePprof serves the Go profiler's endpoints on the Unix socket named by
// PEERLINED_PPROF, for measuring the daemon where it runs (a lab namespace
// or a Pi): `curl --unix-socket $PEERLINED_PPROF
// http://x/debug/pprof/profile?seconds=30 > cpu.pprof`. Off unless the
// variable is set; a Unix socket, so nothing listens on the network.
func servePprof() {
	path := os.Getenv("PEERLINED_PPROF")
	if path == "" {
		return
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "peerlined: PEERLINED_PPROF:", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go http.Serve(ln, mux)
}
