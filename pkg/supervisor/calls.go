package supervisor

import (
	"context"
	"maps"
	"reflect"
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
	s.pushPeerStates(s.paths.Status(), time.Now())
}

// peerStates is what pushPeerStates last did: the path manager's map it
// read (which the manager replaces only when a status changed) and
// whether a peer it looked at was in its startup grace (whose end changes
// the verdict with no new map).
type peerStates struct {
	seen    map[nodekey.Key]peerpath.Status
	inGrace bool
}

// pushPeerStates tells the rewriters what st says, in proportion to what
// changed: every 100 ms with 253 peers, a look at each peer was most of
// the supervisor's idle work. Only a new map (a status changed), a peer in
// or just past its startup grace, or a rewriter not told yet is looked at,
// and a rewriter is told only when its verdict moved. It returns how many
// were told.
func (s *Supervisor) pushPeerStates(st map[nodekey.Key]peerpath.Status, now time.Time) int {
	ps := &s.peerStates
	all := !sameMap(st, ps.seen) || ps.inGrace
	if all {
		ps.seen, ps.inGrace = st, false
	}
	told := 0
	for _, p := range s.peers {
		if p.rewrite == nil || (!all && p.told == p.rewrite) {
			continue
		}
		pst, ok := st[p.cfg.PublicKey]
		if !ok {
			continue
		}
		// The grace is for not having heard yet, not for a peer that was
		// heard and then stopped answering.
		inGrace := !pst.Bye && !pst.Silent && now.Sub(p.tunnelAt) < startupGrace
		ps.inGrace = ps.inGrace || inGrace
		online := pst.Online || inGrace
		if p.told == p.rewrite && p.toldOnline == online && p.toldReason == pst.Reason {
			continue
		}
		p.rewrite.SetPeerState(online, pst.Reason)
		p.told, p.toldOnline, p.toldReason = p.rewrite, online, pst.Reason
		told++
	}
	return told
}

// sameMap reports whether a and b are the same map (not equal ones).
func sameMap[K comparable, V any](a, b map[K]V) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
