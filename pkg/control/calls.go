package control

import (
	"net/netip"
	"time"
)

// CmdCalls returns []CallInfo: the calls through every tunnel lately (a
// call shows for a few minutes after its media stops), ordered by peer and
// line.
const CmdCalls = "calls"

// CallInfo is one call between a phone on this node and a phone at a peer,
// as the rewriter measured its RTP.
type CallInfo struct {
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
	// Sent is the local phone's media towards the peer, measured between
	// the phone and this node; Received the peer's media, measured after
	// the Internet: its loss and jitter are what the local phone hears.
	Sent     CallStream `json:"sent"`
	Received CallStream `json:"received"`
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
	// Jitter is RFC 3550's interarrival jitter; 0 when the payload type's
	// clock rate is unknown.
	Jitter      Duration `json:"jitter_ms"`
	PayloadType uint8    `json:"payload_type"`
	ClockRate   uint32   `json:"clock_rate,omitempty"`
}

// LossPercent is lost as a percentage of expected, never below 0 (more
// duplicates than losses is no loss) nor above 100.
func LossPercent(expected uint64, lost int64) float64 {
	if expected == 0 || lost <= 0 {
		return 0
	}
	return min(100, 100*float64(lost)/float64(expected))
}
