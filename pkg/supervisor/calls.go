package supervisor

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/peerline/peerline/pkg/callstats"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/peerpath"
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

// CallStats is the node's call tracker: live calls, those of the last
// 24 h, and each peer's round trip over the day.
func (s *Supervisor) CallStats() *callstats.Tracker { return s.callStats }

// SampleCalls brings the call tracker up to date now, for a user who asks
// (`peerline calls` right after hanging up sees the call), unless it was
// sampled in the last second: a shorter interval's loss says little.
func (s *Supervisor) SampleCalls(ctx context.Context) error {
	return s.call(ctx, func() {
		if time.Since(s.callSampled) >= time.Second {
			s.sampleCalls()
		}
	})
}

// sampleCalls feeds the call tracker every status interval, on Run's
// goroutine: the rewriters' flows and the path manager's round trips.
func (s *Supervisor) sampleCalls() {
	s.callSampled = time.Now()
	var paths map[nodekey.Key]peerpath.Status
	if s.paths != nil {
		paths = s.paths.Status()
	}
	out := make([]callstats.Peer, 0, len(s.peers))
	for _, i := range slices.Sorted(maps.Keys(s.peers)) {
		p := s.peers[i]
		cp := callstats.Peer{Index: i, Name: p.cfg.Name, RTT: paths[p.cfg.PublicKey].RTT}
		if p.rewrite != nil {
			for _, c := range p.rewrite.Calls() {
				cp.Flows = append(cp.Flows, callstats.Flow{Line: c.Line, Local: c.Local, Remote: c.Remote,
					Sent: callStream(c.Sent), Received: callStream(c.Received)})
			}
		}
		out = append(out, cp)
	}
	s.callStats.Update(time.Now(), out)
}

func callStream(st rewrite.StreamStats) callstats.Stream {
	return callstats.Stream{Packets: st.Packets, Expected: st.Expected, Lost: st.Lost, Jitter: st.Jitter,
		PayloadType: st.PayloadType, ClockRate: st.ClockRate, First: st.First, Last: st.Last}
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
