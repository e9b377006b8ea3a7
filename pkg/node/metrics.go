package node

import (
	"context"
	"maps"
	"net/http"
	"slices"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/metrics"
	"github.com/peerline/peerline/pkg/peerpath"
	"github.com/peerline/peerline/pkg/rewrite"
	"github.com/peerline/peerline/pkg/supervisor"
)

// metricsHandler is /metrics: the same status, calls and counters the
// control commands answer with, for a request with the config's
// console.metrics_token or a console session (authed; nil without a
// console).
func (nd *node) metricsHandler(authed func(*http.Request) bool) http.Handler {
	return metrics.Handler(metrics.Options{
		Source: nd.metricsSnapshot,
		Token:  func() string { return nd.cfg.Load().Console.MetricsToken },
		Authed: authed,
		Log:    nd.log.With("service", "metrics"),
	})
}

func (nd *node) metricsSnapshot(ctx context.Context) (metrics.Snapshot, error) {
	st, err := nd.status(ctx)
	if err != nil {
		return metrics.Snapshot{}, err
	}
	calls, err := nd.calls(ctx)
	if err != nil {
		return metrics.Snapshot{}, err
	}
	c, err := nd.counters(ctx)
	if err != nil {
		return metrics.Snapshot{}, err
	}
	snap := metrics.Snapshot{Status: *st, Calls: calls, Counters: c, Trunks: nd.trunkStatus()}
	if nd.sip != nil {
		ls, err := nd.lines(ctx)
		if err != nil {
			return metrics.Snapshot{}, err
		}
		snap.Lines = &ls
	}
	return snap, nil
}

// counters are the rewriters' drops and refusals and the rendezvous
// registrations (`counters`).
func (nd *node) counters(ctx context.Context) (control.Counters, error) {
	st, err := nd.sup.Status(ctx)
	if err != nil {
		return control.Counters{}, err
	}
	var regs []peerpath.Registration
	if err := nd.sup.Do(ctx, func() {
		if p := nd.sup.Paths(); p != nil {
			regs = p.Registrations()
		}
	}); err != nil {
		return control.Counters{}, err
	}
	return countersFrom(st, nd.cfg.Load().Rendezvous, regs), nil
}

// rewriteCounters are a tunnel's rewriter counters, outbound then inbound,
// every drop reason listed; nil when the tunnel has no rewriter.
func rewriteCounters(p supervisor.PeerStatus) []control.DirectionCounters {
	if p.Rewrite == nil {
		return nil
	}
	var lat rewrite.Latency
	if p.RewriteLatency != nil {
		lat = *p.RewriteLatency
	}
	var out []control.DirectionCounters
	for _, d := range []struct {
		name string
		c    rewrite.Counts
		h    rewrite.Histogram
	}{{"outbound", p.Rewrite.Outbound, lat.Outbound}, {"inbound", p.Rewrite.Inbound, lat.Inbound}} {
		dc := control.DirectionCounters{Direction: d.name, Packets: d.c.Packets, SIPInDialog: d.c.SIPInDialog, Dropped: []control.ReasonCount{
			{Reason: "sip_flood", Count: d.c.Dropped.SIPFlood},
			{Reason: "sip_dialog_flood", Count: d.c.Dropped.SIPDialogFlood},
			{Reason: "sip_refused", Count: d.c.SIPRefused},
			{Reason: "sip_impersonation", Count: d.c.Dropped.SIPImpersonation},
			{Reason: "source_ours", Count: d.c.Dropped.SourceOurs},
			{Reason: "source_foreign", Count: d.c.Dropped.SourceForeign},
			{Reason: "fragment_overlap", Count: d.c.Dropped.FragmentOverlap},
			{Reason: "fragment_timeout", Count: d.c.Dropped.FragmentTimeout},
			{Reason: "fragment_too_big", Count: d.c.Dropped.FragmentTooBig},
			{Reason: "no_room", Count: d.c.Dropped.NoRoom},
		}}
		for _, r := range slices.Sorted(maps.Keys(d.c.SIPRefusals)) {
			dc.SIPRefused = append(dc.SIPRefused, control.ReasonCount{Reason: r, Count: d.c.SIPRefusals[r]})
		}
		if n := d.h.Packets(); n > 0 {
			dc.Latency = &control.RewriterLatency{Sampled: n, P50Ns: uint64(d.h.Quantile(0.5)), P99Ns: uint64(d.h.Quantile(0.99)), SumNs: uint64(d.h.Sum())}
		}
		out = append(out, dc)
	}
	return out
}

// countersFrom is counters' pure part. Servers are listed as configured;
// one whose address has not resolved yet shows unregistered with why.
func countersFrom(st *supervisor.Status, servers []config.Rendezvous, regs []peerpath.Registration) control.Counters {
	out := control.Counters{Peers: []control.PeerCounters{}, Rendezvous: []control.RendezvousState{}}
	for _, p := range st.Peers {
		if dirs := rewriteCounters(p); dirs != nil {
			out.Peers = append(out.Peers, control.PeerCounters{Index: p.Index, Name: p.Name, Directions: dirs})
		}
	}
	for _, s := range servers {
		rs := control.RendezvousState{Server: s.Address, Error: "its address has not resolved yet"}
		for _, r := range regs {
			if r.Key != s.Key {
				continue
			}
			rs.Error, rs.Registered = "", r.Registered
			if !r.Last.IsZero() {
				t := r.Last.UTC()
				rs.LastRegistered = &t
			}
		}
		out.Rendezvous = append(out.Rendezvous, rs)
	}
	return out
}
