package control

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"time"
)

// Commands the daemon answers, and their argument and result types.
const (
	// CmdStatus returns a Status.
	CmdStatus = "status"
	// CmdPhones returns []Phone.
	CmdPhones = "phones"
	// CmdForgetPhone takes ForgetPhoneArgs and returns nothing.
	CmdForgetPhone = "phones.forget"
)

// Status is the node as `peerline status` and `peerline peers` show it.
type Status struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	PublicKey string `json:"public_key"`
	// Ready is true once the phone port and every tunnel have been set up.
	Ready bool `json:"ready"`
	// Lines are the phone lines served on the phone port; ActiveLines are
	// those with media through a tunnel lately.
	Lines       []int    `json:"lines"`
	ActiveLines []int    `json:"active_lines"`
	Peers       []Peer   `json:"peers"`
	Rendezvous  []string `json:"rendezvous,omitempty"`
	// NATClass is this node's NAT mapping as the servers saw it.
	NATClass string `json:"nat_class,omitempty"`
	// BootConfigError is what is wrong with the boot partition's config
	// file, if anything.
	BootConfigError string `json:"boot_config_error,omitempty"`
	// BootJoin is the join `join =` in peerline.txt asked for, if any.
	BootJoin *JoinProgress `json:"boot_join,omitempty"`
	// Console says whether the web console has an admin password yet.
	ConsolePasswordSet bool      `json:"console_password_set"`
	Started            time.Time `json:"started"`
}

// Peer is one paired node and its tunnel.
type Peer struct {
	Index int    `json:"index"`
	Name  string `json:"name,omitempty"`
	// Up means the tunnel is configured; Online that a WireGuard handshake
	// happened recently enough for traffic to flow.
	Up     bool   `json:"up"`
	Online bool   `json:"online"`
	Error  string `json:"error,omitempty"`
	// Path is "direct" or "relay"; PathReason says why a path was chosen
	// when that is not obvious.
	Path       string `json:"path,omitempty"`
	PathReason string `json:"path_reason,omitempty"`
	Endpoint   string `json:"endpoint,omitempty"`
	// MTU is the largest packet the tunnel carries to the peer: larger
	// ones (a desk phone's big INVITE) cross it in fragments.
	MTU           int        `json:"mtu,omitempty"`
	RTT           *Duration  `json:"rtt,omitempty"`
	NATClass      string     `json:"nat_class,omitempty"`
	LastHandshake *time.Time `json:"last_handshake,omitempty"`
	RxBytes       uint64     `json:"rx_bytes"`
	TxBytes       uint64     `json:"tx_bytes"`
	// Rewrite is the tunnel's rewriter counters, outbound then inbound,
	// as CmdCounters gives them; nil while the tunnel has no rewriter.
	Rewrite []DirectionCounters `json:"rewrite,omitempty"`
}

// Phone is one phone on the phone port, as the DHCP server knows it.
type Phone struct {
	Line      int        `json:"line"`
	MAC       string     `json:"mac"`
	Vendor    string     `json:"vendor,omitempty"`
	Model     string     `json:"model,omitempty"`
	Hostname  string     `json:"hostname,omitempty"`
	UserAgent string     `json:"user_agent,omitempty"`
	Addr      netip.Addr `json:"address"`
	Bound     time.Time  `json:"bound"`
	LastSeen  time.Time  `json:"last_seen"`
	InCall    bool       `json:"in_call"`
	// Label is the owner's name for the line.
	Label string `json:"label,omitempty"`
}

// ForgetPhoneArgs names the line to free.
type ForgetPhoneArgs struct {
	Line int `json:"line"`
}

// Duration is a time.Duration that reads and writes as milliseconds, the
// unit people compare round-trip times in.
type Duration time.Duration

// MarshalJSON writes milliseconds with microsecond precision.
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(d)/float64(time.Millisecond), 'f', 3, 64), nil
}

// UnmarshalJSON reads milliseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	*d = Duration(ms * float64(time.Millisecond))
	return nil
}

// Pairing commands.
const (
	// CmdInvite takes InviteArgs and returns InviteResult.
	CmdInvite = "invite"
	// CmdInvites returns []InviteEntry: the invites made on this node.
	CmdInvites = "invite.list"
	// CmdRevokeInvite takes RevokeInviteArgs.
	CmdRevokeInvite = "invite.revoke"
	// CmdJoin takes JoinArgs and returns PeerRef once paired.
	CmdJoin = "join"
	// CmdRemove takes PeerArgs and returns PeerRef.
	CmdRemove = "remove"
	// CmdPing takes PeerArgs and returns PingResult.
	CmdPing = "ping"
)

// InviteArgs ask for an invite valid for TTL (0: the default, a day).
type InviteArgs struct {
	TTL Duration `json:"ttl_ms,omitempty"`
}

// InviteResult is a new invite: the code to type, the text for a QR code.
type InviteResult struct {
	// Code is the short code when a rendezvous server stored the invite,
	// else the long one; URI is its QR form.
	Code    string    `json:"code"`
	URI     string    `json:"uri"`
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
	// LongCode holds everything itself: it works even when no server
	// keeps the short code's part (a server restarted since).
	LongCode string `json:"long_code"`
	LongURI  string `json:"long_uri"`
	// Note says why Code is the long form, if it is.
	Note string `json:"note,omitempty"`
}

// InviteEntry is one invite as the inviter keeps it.
type InviteEntry struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// State is "pending", "used", "expired" or "revoked".
	State  string `json:"state"`
	Joiner string `json:"joiner,omitempty"`
}

// RevokeInviteArgs name the invite to revoke.
type RevokeInviteArgs struct {
	ID string `json:"id"`
}

// JoinArgs carry the code to join with.
type JoinArgs struct {
	Code string `json:"code"`
}

// PeerArgs name a peer by index or name.
type PeerArgs struct {
	Peer string `json:"peer"`
}

// PeerRef says which peer a command acted on.
type PeerRef struct {
	Index int    `json:"index"`
	Name  string `json:"name,omitempty"`
}

// PingResult is one probe's round trip to a peer.
type PingResult struct {
	PeerRef
	RTT      Duration `json:"rtt"`
	Path     string   `json:"path"`
	Endpoint string   `json:"endpoint,omitempty"`
}
