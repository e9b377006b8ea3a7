package supervisor

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/peerline/peerline/pkg/rewrite"
)

// PeerCalls are the calls through one peer's tunnel.
type PeerCalls struct {
	Index int
	Name  string
	Calls []rewrite.CallStats
}

// Calls lists the calls the rewriters see, per peer.
func (s *Supervisor) Calls(ctx context.Context) ([]PeerCalls, error) {
	var out []PeerCalls
	var devs []*rewrite.Device
	if err := s.call(ctx, func() {
		for _, i := range slices.Sorted(maps.Keys(s.peers)) {
			if p := s.peers[i]; p.rewrite != nil {
				out = append(out, PeerCalls{Index: i, Name: p.cfg.Name})
				devs = append(devs, p.rewrite)
			}
		}
	}); err != nil {
		return nil, err
	}
	// Off Run's goroutine: Calls takes only the rewriter's own locks.
	for k, d := range devs {
		out[k].Calls = d.Calls()
	}
	return out, nil
}

// startupGrace is how long after its tunnel came up a peer not found yet
// still gets calls sent (WireGuard queues them until the handshake): at
// start the path manager has not heard from anyone, which is not the same
// as the peer being offline.
const startupGrace = 10 * time.Second

// syncPeerStates tells each rewriter whether its peer is online, so that a
// call to an offline peer is refused at once (480) rather than ringing.
func (s *Supervisor) syncPeerStates() {
	if s.paths == nil {
		return
	}
	st := s.paths.Status()
	now := time.Now()
	for _, p := range s.peers {
		if p.rewrite == nil {
			continue
		}
		ps, ok := st[p.cfg.PublicKey]
		if !ok {
			continue
		}
		// The grace is for not having heard yet, not for a peer that was
		// heard and then stopped answering.
		online := ps.Online || (!ps.Bye && !ps.Silent && now.Sub(p.tunnelAt) < startupGrace)
		p.rewrite.SetPeerState(online, ps.Reason)
	}
}
