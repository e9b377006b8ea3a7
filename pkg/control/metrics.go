package control

import (
	"fmt"
	"strings"
	"time"
)

// CmdCounters returns Counters: what the rewriters dropped and refused, by
// reason, and the state of each rendezvous registration. /metrics reads it.
const CmdCounters = "counters"

// Counters are the node's event counts since peerlined started.
type Counters struct {
	Peers      []PeerCounters    `json:"peers"`
	Rendezvous []RendezvousState `json:"rendezvous"`
}

// PeerCounters are one tunnel's rewriter counts.
type PeerCounters struct {
	Index int    `json:"index"`
	Name  string `json:"name,omitempty"`
	// Directions are "outbound" (from the phones into the tunnel) and
	// "inbound".
	Directions []DirectionCounters `json:"directions"`
}

// DirectionCounters are one direction's drops and SIP refusals.
type DirectionCounters struct {
	Direction string `json:"direction"`
	// Packets is every packet the rewriter handled this way.
	Packets uint64 `json:"packets"`
	// Dropped are packets not passed on, by reason ("sip_flood",
	// "sip_dialog_flood", "sip_refused", "sip_impersonation",
	// "source_ours", "fragment_timeout", ...), every reason listed, zero or
	// not.
	Dropped []ReasonCount `json:"dropped"`
	// SIPRefused are SIP messages the parser refused, by its reason;
	// only the reasons seen.
	SIPRefused []ReasonCount `json:"sip_refused,omitempty"`
	// SIPInDialog are SIP messages from the peer in a dialog a local
	// phone is in, which the flood limit let through (inbound only).
	SIPInDialog uint64 `json:"sip_in_dialog,omitempty"`
	// Latency is the time packets spent in the rewriter, from a sample
	// of them; nil before any was timed.
	Latency *RewriterLatency `json:"latency,omitempty"`
}

// DroppedTotal is the sum of d.Dropped.
func (d DirectionCounters) DroppedTotal() uint64 {
	var n uint64
	for _, r := range d.Dropped {
		n += r.Count
	}
	return n
}

// RewriterLatency is the time packets spent in the rewriter: Sampled
// packets were timed, and half took under P50Ns, 99 % under P99Ns
// (within 12.5 %). SumNs is their total, for Prometheus's summary (each
// packet counted at the middle of its histogram bucket).
type RewriterLatency struct {
	Sampled uint64 `json:"sampled"`
	P50Ns   uint64 `json:"p50_ns"`
	P99Ns   uint64 `json:"p99_ns"`
	SumNs   uint64 `json:"sum_ns"`
}

// ReasonCount is a count and why.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
}

// ReasonText lists counts as people read them: "sip_flood 1200, no_room 1".
func ReasonText(rs []ReasonCount) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%s %d", r.Reason, r.Count)
	}
	return strings.Join(parts, ", ")
}

// RendezvousState is the node's registration with one rendezvous server.
type RendezvousState struct {
	// Server is the address as configured.
	Server string `json:"server"`
	// Registered is true while the server confirmed the registration
	// within the last three refresh intervals.
	Registered     bool       `json:"registered"`
	LastRegistered *time.Time `json:"last_registered,omitempty"`
	// Error says why the server has no client yet (its name does not
	// resolve), if so.
	Error string `json:"error,omitempty"`
}

// DroppedText lists a tunnel's drops by direction and reason, the
// reasons seen only, with the SIP parser's reasons for sip_refused, as
// people read it (`peerline peers`, the console); "" when nothing was
// dropped.
func DroppedText(dirs []DirectionCounters) string {
	var parts []string
	for _, d := range dirs {
		for _, r := range d.Dropped {
			if r.Count == 0 {
				continue
			}
			part := fmt.Sprintf("%s %s %d", d.Direction, r.Reason, r.Count)
			if r.Reason == "sip_refused" && len(d.SIPRefused) > 0 {
				part += " (" + ReasonText(d.SIPRefused) + ")"
			}
			parts = append(parts, part)
		}
	}
	return strings.Join(parts, ", ")
}

// LatencyText is the time packets spent in a tunnel's rewriter.
func LatencyText(dirs []DirectionCounters) string {
	var parts []string
	for _, d := range dirs {
		if l := d.Latency; l != nil {
			parts = append(parts, fmt.Sprintf("%s p50 %v p99 %v", d.Direction, time.Duration(l.P50Ns), time.Duration(l.P99Ns)))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, ", ") + " per packet"
}
