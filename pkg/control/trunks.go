package control

import "time"

// CmdTrunks returns Trunks: each configured trunk (an outside SIP
// account, pkg/trunk) and where its registration stands.
const CmdTrunks = "trunks"

// Trunks is what `peerline trunks` shows.
type Trunks struct {
	Trunks []Trunk `json:"trunks"`
}

// Trunk is one configured trunk. The password is never included.
type Trunk struct {
	Name      string `json:"name"`
	Registrar string `json:"registrar"`
	User      string `json:"user"`
	// Prefix routes numbers dialled with it through the trunk.
	Prefix string `json:"prefix,omitempty"`
	// Lines ring for the trunk's incoming calls.
	Lines []int `json:"lines"`
	// State is "waiting" (the trunk cannot start yet: Detail says why),
	// "registering", "registered", "failed" or "stopped".
	State string `json:"state"`
	// Status is the one-line form a person reads: "registered",
	// "failed: 403 Forbidden: check the trunk's user and password,
	// retrying in 20 s", "waiting: the uplink has no address".
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Uplink and Phones are the trunk's SIP sockets, once bound.
	Uplink string `json:"uplink,omitempty"`
	Phones string `json:"phones,omitempty"`
	// Contact is the address the provider has for us (our public one
	// behind a NAT), once registered.
	Contact string `json:"contact,omitempty"`
	// Until is when the registration runs out; RetryAt when a failed
	// one is tried again.
	Until    *time.Time `json:"until,omitempty"`
	RetryAt  *time.Time `json:"retry_at,omitempty"`
	Calls    int        `json:"calls"`
	Failures int        `json:"failures,omitempty"`
}
