package node

import (
	"reflect"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/peerpath"
	"github.com/peerline/peerline/pkg/rewrite"
	"github.com/peerline/peerline/pkg/supervisor"
)

func TestCountersFrom(t *testing.T) {
	k1, _ := nodekey.Generate()
	k2, _ := nodekey.Generate()
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	var rs rewrite.Stats
	rs.Inbound.Dropped.SIPFlood = 12
	rs.Inbound.SIPRefused = 3
	rs.Inbound.SIPRefusals = map[string]uint64{"too-many-headers": 1, "bad-content-length": 2}
	rs.Outbound.Dropped.NoRoom = 1
	rs.Inbound.Dropped.SIPDialogFlood = 4
	rs.Inbound.Dropped.SIPImpersonation = 5
	rs.Inbound.Dropped.SourceOurs = 6
	rs.Inbound.SIPInDialog = 40
	rs.Inbound.Packets = 1000
	lat := rewrite.Latency{Inbound: rewrite.Histogram{Buckets: []rewrite.LatencyBucket{{LowNs: 960, Packets: 99}, {LowNs: 1920, Packets: 1}}}}
	st := &supervisor.Status{Peers: []supervisor.PeerStatus{
		{Index: 7, Name: "bob", Rewrite: &rs, RewriteLatency: &lat},
		{Index: 9, Name: "carol"}, // its tunnel is not up: no rewriter
	}}
	servers := []config.Rendezvous{{Address: "rv1.example.org:3478", Key: k1.Public()}, {Address: "rv2.example.org:3478", Key: k2.Public()}}
	regs := []peerpath.Registration{{Key: k1.Public(), Last: at, Registered: true}}
	got := countersFrom(st, servers, regs)

	if len(got.Peers) != 1 || got.Peers[0].Index != 7 || len(got.Peers[0].Directions) != 2 {
		t.Fatalf("peers = %+v, want bob's two directions", got.Peers)
	}
	in := got.Peers[0].Directions[1]
	reason := func(rc []control.ReasonCount, r string) uint64 {
		for _, x := range rc {
			if x.Reason == r {
				return x.Count
			}
		}
		t.Fatalf("no reason %s in %+v", r, rc)
		return 0
	}
	if in.Direction != "inbound" || reason(in.Dropped, "sip_flood") != 12 || reason(in.Dropped, "sip_refused") != 3 || reason(in.Dropped, "fragment_timeout") != 0 ||
		reason(in.Dropped, "sip_dialog_flood") != 4 || reason(in.Dropped, "sip_impersonation") != 5 || reason(in.Dropped, "source_ours") != 6 ||
		in.SIPInDialog != 40 || in.Packets != 1000 || in.DroppedTotal() != 12+3+4+5+6 {
		t.Errorf("inbound = %+v", in)
	}
	if want := (&control.RewriterLatency{Sampled: 100, P50Ns: 992, P99Ns: 992, SumNs: 99*992 + 1984}); !reflect.DeepEqual(in.Latency, want) {
		t.Errorf("inbound latency = %+v, want %+v", in.Latency, want)
	}
	if want := []control.ReasonCount{{Reason: "bad-content-length", Count: 2}, {Reason: "too-many-headers", Count: 1}}; !reflect.DeepEqual(in.SIPRefused, want) {
		t.Errorf("inbound refusals = %+v, want %+v (sorted)", in.SIPRefused, want)
	}
	if out := got.Peers[0].Directions[0]; out.Direction != "outbound" || reason(out.Dropped, "no_room") != 1 || out.SIPRefused != nil || out.Latency != nil {
		t.Errorf("outbound = %+v", out)
	}
	if got, want := droppedByPeer(st), map[int][]control.ReasonCount{7: {
		{Reason: "outbound no_room", Count: 1},
		{Reason: "inbound sip_flood", Count: 12}, {Reason: "inbound sip_dialog_flood", Count: 4}, {Reason: "inbound sip_refused", Count: 3},
		{Reason: "inbound sip_impersonation", Count: 5}, {Reason: "inbound source_ours", Count: 6},
	}}; !reflect.DeepEqual(got, want) {
		t.Errorf("droppedByPeer = %+v, want %+v", got, want)
	}
	want := []control.RendezvousState{
		{Server: "rv1.example.org:3478", Registered: true, LastRegistered: &at},
		{Server: "rv2.example.org:3478", Error: "its address has not resolved yet"},
	}
	if !reflect.DeepEqual(got.Rendezvous, want) {
		t.Errorf("rendezvous = %+v, want %+v", got.Rendezvous, want)
	}
}
