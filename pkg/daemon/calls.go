package daemon

import (
	"context"

	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/rewrite"
)

// calls is `peerline calls`: every call the rewriters see, with its
// quality figures.
func (nd *node) calls(ctx context.Context) ([]control.CallInfo, error) {
	peers, err := nd.sup.Calls(ctx)
	if err != nil {
		return nil, err
	}
	out := []control.CallInfo{}
	for _, p := range peers {
		for _, c := range p.Calls {
			out = append(out, control.CallInfo{Peer: p.Index, PeerName: p.Name, Line: c.Line, Local: c.Local, Remote: c.Remote,
				Since: c.Since(), LastPacket: c.LastPacket(), Sent: callStream(c.Sent), Received: callStream(c.Received)})
		}
	}
	return out, nil
}

func callStream(s rewrite.StreamStats) control.CallStream {
	return control.CallStream{Packets: s.Packets, Expected: s.Expected, Lost: s.Lost,
		LossPercent: control.LossPercent(s.Expected, s.Lost), Jitter: control.Duration(s.Jitter),
		PayloadType: s.PayloadType, ClockRate: s.ClockRate}
}
