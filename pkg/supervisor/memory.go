package supervisor

import (
	"os"
	"runtime/debug"
)

// How much the Go heap may grow past what is live (issue 16: 64 MB RSS at
// 253 peers, half of them online; 40 MB at 32). With the default GOGC of
// 100 the runtime lets the heap grow to twice what is live before
// collecting, and gives freed memory back to the OS only down to about
// that, so a node with 253 peers kept an RSS of about four times its live
// heap (bench-scale: 49 MB live after a collection, 190-230 MB RSS).
//
// A memory limit chosen from the peer count (debug.SetMemoryLimit) was
// tried first and is not used: it is a floor the collector fights for,
// not a proportion, so wherever the live heap and the goroutines' stacks
// came near it (a cold start wakes every device; 253 peers with half awake
// need about 75 MB in all) the collector ran all the time: 31-37 % of a
// core idle instead of 11 %, READY in 51-84 s and adding a peer 14 s. A
// lower GOGC keeps the same proportion whatever is live: the heap grows a
// quarter past it, and collections come about four times as often, each
// as cheap as before (the node allocates little once up).
const gcPercent = 25

// limitMemory sets the collector's pace for a daemon that runs real
// tunnels, unless GOGC is set.
func (s *Supervisor) limitMemory() {
	if !s.realTunnels || s.gcSet || os.Getenv("GOGC") != "" {
		return
	}
	s.gcSet = true
	debug.SetGCPercent(gcPercent)
}
