package control

import (
	"net/netip"
	"time"
)

// CmdLines returns Lines: the Pi's SIP service (issue 18): each local
// line's account, registration and SIP URI, every paired node's lines as
// they are dialled here, and the recent dial-plan decisions.
const CmdLines = "lines"

// Lines is what `peerline lines` shows.
type Lines struct {
	// Service is "on", "off" (sip.off in the config) or why it is not
	// running.
	Service string `json:"service"`
	// Node is this node's name, the host part of its lines' URIs.
	Node string `json:"node"`
	// Lines are this node's lines.
	Lines []Line `json:"lines"`
	// Peers are the paired nodes' lines as this node dials them.
	Peers []PeerLine `json:"peers"`
	// Decisions are the latest dial-plan decisions, newest first.
	Decisions []DialDecision `json:"decisions"`
	// Registrar counts what the registrar decided since the start.
	Registrar RegistrarCounts `json:"registrar"`
	// Calls counts the dial-plan decisions by kind: local, peer, trunk,
	// refuse.
	Calls map[string]uint64 `json:"calls"`
}

// Line is one local line.
type Line struct {
	Line  int    `json:"line"`
	Label string `json:"label,omitempty"`
	// URIs are the line's SIP URIs: sip:<line>@<node>, and
	// sip:<label>@<node> when it has a label.
	URIs []string `json:"uris"`
	// Address is the phone's address, 10.0.s.1: dialled directly, it
	// always works, registered or not.
	Address netip.Addr `json:"address"`
	// Account says whether the line has its SIP password yet (made when
	// the line's phone first fetches its configuration).
	Account bool `json:"account"`
	// Registration is the phone's live registration, if any.
	Registration *Registration `json:"registration,omitempty"`
}

// Registration is where a line's phone registered from.
type Registration struct {
	Contact   string `json:"contact"`
	Source    string `json:"source"`
	UserAgent string `json:"user_agent,omitempty"`
	// Digest is the algorithm the phone authenticated with: "SHA-256",
	// or "MD5" for a phone that has nothing better.
	Digest  string    `json:"digest,omitempty"`
	Expires time.Time `json:"expires"`
}

// PeerLine is one line of a paired node.
type PeerLine struct {
	Peer int    `json:"peer"`
	Name string `json:"name"`
	Line int    `json:"line"`
	// Label is the peer's own name for the line, as it announced it
	// (dialled as <peer>.<label>, or sip:<label>@<peer>).
	Label string `json:"label,omitempty"`
	// URI is sip:<line>@<peer name>; Short the short number (<i>*<s>),
	// Dial the name (<peer>.<s>) a registered phone dials.
	URI     string     `json:"uri,omitempty"`
	Short   string     `json:"short"`
	Dial    string     `json:"dial,omitempty"`
	Address netip.Addr `json:"address"`
}

// DialDecision is one INVITE the SIP service answered.
type DialDecision struct {
	Time     time.Time `json:"time"`
	From     string    `json:"from"`
	Dialled  string    `json:"dialled"`
	Decision string    `json:"decision"`
	Code     int       `json:"code"`
	Target   string    `json:"target,omitempty"`
	Reason   string    `json:"reason"`
}

// RegistrarCounts are the registrar's counters.
type RegistrarCounts struct {
	Registered   uint64 `json:"registered"`
	Unregistered uint64 `json:"unregistered"`
	Challenged   uint64 `json:"challenged"`
	Refused      uint64 `json:"refused"`
	Limited      uint64 `json:"limited"`
}
