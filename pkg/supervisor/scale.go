package supervisor

import (
	"maps"
	"slices"
	"sync"
)

// How reconcile scales to 253 peers (issue 16).
//
// Building a peer (namespace, firewall, sysctls, veth, addresses, routes,
// TUN, WireGuard device) takes tens of milliseconds, much of it waiting on
// the kernel and on nft; checking a built one again costs about as much,
// because every step re-reads the kernel's state through a fresh thread in
// the peer's namespace. Doing all of that for every peer on every check (and
// on every config reload) cost seconds of CPU per check with 253 peers and
// made adding one peer take seconds. So:
//
//   - a peer this run has built completely is only looked at cheaply on
//     each check: its namespace and its root link must still exist (one
//     listing each for all peers), or it is rebuilt;
//   - each periodic check also verifies verifyPerCheck built peers in full,
//     in turn, so that something changed behind the daemon's back inside a
//     namespace (a route deleted by hand) is still repaired, within
//     253/verifyPerCheck checks;
//   - a reload verifies none in full: it touches only the peers it changed;
//   - when many peers need building (a cold start), buildWorkers of them are
//     built at once: the steps of different peers touch different
//     namespaces, and the shared pieces (netsetup, the socket mux, the path
//     manager) are safe for concurrent use. A handful are built one after
//     another, which keeps a small bring-up's order fixed.
const (
	verifyPerCheck  = 4
	buildWorkers    = 8
	parallelBuildAt = 5
)

// shouldEnsure reports whether reconcile must run p's full ensure: it is
// not built yet, or its namespace or root link is gone, or it is due for a
// full verification.
func (s *Supervisor) shouldEnsure(p *peer, namespaces, links []string, listed, due bool) bool {
	if !p.built || !listed || due {
		return true
	}
	i := p.cfg.Index
	return !slices.Contains(namespaces, s.names.Namespace(i)) || !slices.Contains(links, s.names.Veth(i))
}

// ensurePeers runs ensurePeer for each of todo, in parallel when there are
// many, and returns their errors in the same order.
func (s *Supervisor) ensurePeers(todo []*peer) []error {
	errs := make([]error, len(todo))
	if len(todo) < parallelBuildAt {
		for k, p := range todo {
			errs[k] = s.ensurePeer(p)
		}
		return errs
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(buildWorkers, len(todo)) {
		wg.Go(func() {
			for k := range next {
				errs[k] = s.ensurePeer(todo[k])
			}
		})
	}
	for k := range todo {
		next <- k
	}
	close(next)
	wg.Wait()
	return errs
}

// releasePeers releases every peer of ps, buildWorkers at a time when
// there are many: a shutdown with 253 peers, one after another, outlasted
// systemd's (and the lab's) stop timeout, and the namespaces and sockets
// of a daemon killed then stay behind until the next start.
func (s *Supervisor) releasePeers(ps map[int]*peer) {
	keys := slices.Sorted(maps.Keys(ps))
	if len(keys) < parallelBuildAt {
		for _, i := range keys {
			s.releasePeer(i, ps[i])
		}
		return
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(buildWorkers, len(keys)) {
		wg.Go(func() {
			for i := range next {
				s.releasePeer(i, ps[i])
			}
		})
	}
	for _, i := range keys {
		next <- i
	}
	close(next)
	wg.Wait()
}
