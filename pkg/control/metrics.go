package control

import "time"

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
	// Dropped are packets not passed on, by reason ("sip_flood",
	// "fragment_timeout", ...), every reason listed, zero or not.
	Dropped []ReasonCount `json:"dropped"`
	// SIPRefused are SIP messages the parser refused, by its reason;
	// only the reasons seen.
	SIPRefused []ReasonCount `json:"sip_refused,omitempty"`
}

// ReasonCount is a count and why.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
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
