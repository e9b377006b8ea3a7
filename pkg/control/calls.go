package control

import (
	"net/netip"
	"time"
)

// Call commands.
const (
	// CmdCalls returns []CallInfo: the live calls through every tunnel,
	// newest first, then those that ended in the last 24 h, most recent
	// first.
	CmdCalls = "calls"
	// CmdCallHistory takes CallHistoryArgs and returns []QualityPoint: the
	// received quality of one call over its length.
	CmdCallHistory = "calls.history"
	// CmdRTTHistory takes PeerArgs and returns RTTHistory: the peer's
	// round trip over the last 24 h, a point a minute.
	CmdRTTHistory = "peers.rtt"
)

// CallInfo is one call between a phone on this node and a phone at a peer,
// as the rewriter measured its RTP.
type CallInfo struct {
	// ID names the call for CmdCallHistory while peerlined runs.
	ID uint64 `json:"id"`
	// State is "live", or "ended" once no media came for 10 s; the call
	// ended at LastPacket.
	State    string `json:"state"`
	Peer     int    `json:"peer"`
	PeerName string `json:"peer_name,omitempty"`
	// Line is the local phone's line; Local its media address and port.
	Line  int            `json:"line"`
	Local netip.AddrPort `json:"local"`
	// Remote is the other phone's media address and port as this node's
	// phones dial it (10.i.s.p).
	Remote netip.AddrPort `json:"remote"`
	// Since is the first media packet either way, LastPacket the latest.
	Since      time.Time `json:"since"`
	LastPacket time.Time `json:"last_packet"`
	// RTT is the peer's latest round trip during the call.
	RTT *Duration `json:"rtt_ms,omitempty"`
	// MOS is Received.MOS: how the call sounds at the local phone.
	MOS float64 `json:"mos,omitempty"`
	// Sent is the local phone's media towards the peer, measured between
	// the phone and this node; Received the peer's media, measured after
	// the Internet: its loss and jitter are what the local phone hears.
	Sent     CallStream `json:"sent"`
	Received CallStream `json:"received"`
	// RewriteDropped is what the rewriter of the call's tunnel dropped
	// since peerlined started (all calls with that peer, not this one
	// alone), by direction and reason ("inbound sip_flood"); only the
	// reasons seen. A call whose hang-up or re-INVITE went missing is
	// explained here.
	RewriteDropped []ReasonCount `json:"rewrite_dropped,omitempty"`
}

// CallStream is one direction of a call's RTP.
type CallStream struct {
	Packets uint64 `json:"packets"`
	// Expected is how many packets the sequence numbers say were sent;
	// Lost is Expected less those received (negative when duplicates
	// outnumber losses), LossPercent the same as a share of Expected.
	Expected    uint64  `json:"expected"`
	Lost        int64   `json:"lost"`
	LossPercent float64 `json:"loss_percent"`
	// Jitter is RFC 3550's interarrival jitter, the latest estimate
	// (MaxJitter the worst sampled); 0 when the payload type's clock rate
	// is unknown.
	Jitter      Duration `json:"jitter_ms"`
	MaxJitter   Duration `json:"max_jitter_ms"`
	PayloadType uint8    `json:"payload_type"`
	ClockRate   uint32   `json:"clock_rate,omitempty"`
	// MOS is the estimated mean opinion score (1-4.5, simplified G.107
	// E-model, docs/call-quality.md) over the call so far, MinMOS that of
	// its worst 5 s; 0 while no packet came this way.
	MOS    float64 `json:"mos,omitempty"`
	MinMOS float64 `json:"min_mos,omitempty"`
}

// Call states.
const (
	CallLive  = "live"
	CallEnded = "ended"
)

// CallHistoryArgs name the call.
type CallHistoryArgs struct {
	ID uint64 `json:"id"`
}

// QualityPoint is a call's received quality over a few seconds (longer
// calls merge their points, keeping at most 360).
type QualityPoint struct {
	Time        time.Time `json:"time"`
	LossPercent float64   `json:"loss_percent"`
	Jitter      Duration  `json:"jitter_ms"`
	RTT         Duration  `json:"rtt_ms"`
	MOS         float64   `json:"mos"`
	Packets     uint64    `json:"packets"`
}

// RTTHistory is a peer's round trip over the last 24 h.
type RTTHistory struct {
	PeerRef
	Points []RTTPoint `json:"points"`
}

// RTTPoint is one round trip.
type RTTPoint struct {
	Time time.Time `json:"time"`
	RTT  Duration  `json:"rtt_ms"`
}
