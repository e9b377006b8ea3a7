package node

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/peerline/peerline/pkg/callstats"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/pairing"
	"github.com/peerline/peerline/pkg/supervisor"
)

// calls is `peerline calls`: the live calls, then those of the last 24 h,
// with their quality.
func (nd *node) calls(ctx context.Context) ([]control.CallInfo, error) {
	// A supervisor busy for a second (setting up a tunnel) or stopped
	// still has its last sample, at most a status interval old.
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	err := nd.sup.SampleCalls(sctx)
	cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		nd.log.Debug("calls: showing the last sample", "err", err)
	}
	calls := nd.sup.CallStats().Calls()
	// The tunnels' drops, if the supervisor answers as quickly: they
	// explain a call, they are not the call.
	var dropped map[int][]control.ReasonCount
	if len(calls) > 0 {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		if st, err := nd.sup.Status(sctx); err == nil {
			dropped = droppedByPeer(st)
		}
		cancel()
	}
	out := make([]control.CallInfo, 0, len(calls))
	for _, c := range calls {
		ci := control.CallInfo{ID: c.ID, State: control.CallLive, Peer: c.Peer, PeerName: c.PeerName, Line: c.Line,
			Local: c.Local, Remote: c.Remote, Since: c.Start, LastPacket: c.LastPacket,
			MOS: c.Received.MOS, Sent: callStream(c.Sent), Received: callStream(c.Received), RewriteDropped: dropped[c.Peer]}
		if c.Ended {
			ci.State = control.CallEnded
		}
		if c.RTT > 0 {
			d := control.Duration(c.RTT)
			ci.RTT = &d
		}
		out = append(out, ci)
	}
	return out, nil
}

// droppedByPeer is each tunnel's rewriter drops, "direction reason", the
// reasons seen only.
func droppedByPeer(st *supervisor.Status) map[int][]control.ReasonCount {
	out := map[int][]control.ReasonCount{}
	for _, p := range st.Peers {
		for _, d := range rewriteCounters(p) {
			for _, r := range d.Dropped {
				if r.Count > 0 {
					out[p.Index] = append(out[p.Index], control.ReasonCount{Reason: d.Direction + " " + r.Reason, Count: r.Count})
				}
			}
		}
	}
	return out
}

func callStream(q callstats.Quality) control.CallStream {
	return control.CallStream{Packets: q.Packets, Expected: q.Expected, Lost: q.Lost, LossPercent: q.LossPercent,
		Jitter: control.Duration(q.Jitter), MaxJitter: control.Duration(q.MaxJitter),
		PayloadType: q.PayloadType, ClockRate: q.ClockRate, MOS: q.MOS, MinMOS: q.MinMOS}
}

// callHistory is one call's received quality over its length.
func (nd *node) callHistory(id uint64) ([]control.QualityPoint, error) {
	pts, ok := nd.sup.CallStats().History(id)
	if !ok {
		return nil, fmt.Errorf("no call %d in the last 24 hours; `peerline calls` lists them with their IDs", id)
	}
	out := make([]control.QualityPoint, len(pts))
	for k, p := range pts {
		out[k] = control.QualityPoint{Time: p.Time, LossPercent: p.LossPercent, Jitter: control.Duration(p.Jitter),
			RTT: control.Duration(p.RTT), MOS: p.MOS, Packets: p.Packets}
	}
	return out, nil
}

// rttHistory is a peer's round trip over the last 24 h.
func (nd *node) rttHistory(which string) (*control.RTTHistory, error) {
	p, err := pairing.FindPeer(nd.cfg.Load(), which)
	if err != nil {
		return nil, err
	}
	pts := nd.sup.CallStats().PeerRTT(p.Index, time.Now().Add(-callstats.Keep))
	out := &control.RTTHistory{PeerRef: control.PeerRef{Index: p.Index, Name: p.Name}, Points: make([]control.RTTPoint, len(pts))}
	for k, x := range pts {
		out.Points[k] = control.RTTPoint{Time: x.Time, RTT: control.Duration(x.RTT)}
	}
	return out, nil
}

// callHandlers are the control commands about calls and counters, for
// node.handlers.
func (nd *node) callHandlers() map[string]control.Handler {
	return map[string]control.Handler{
		control.CmdCounters: func(ctx context.Context, _ json.RawMessage) (any, error) {
			return nd.counters(ctx)
		},
		control.CmdCalls: func(ctx context.Context, _ json.RawMessage) (any, error) {
			return nd.calls(ctx)
		},
		control.CmdCallHistory: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.CallHistoryArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nd.callHistory(a.ID)
		},
		control.CmdRTTHistory: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.PeerArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nd.rttHistory(a.Peer)
		},
	}
}
