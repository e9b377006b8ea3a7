// Package config is peerlined's typed configuration: one JSON file, decoded
// strictly (unknown keys are errors, so a typo never silently falls back to a
// default) and validated once, with messages that name the bad entry and say
// how to fix it.
//
// JSON was chosen because the standard library reads it, it has one obvious
// way to write each value, and the file is produced by tools (pairing, the
// image's first-boot step) more often than typed by hand. The annotated
// example is rootfs/etc/peerline/peerlined.json with its notes in
// rootfs/etc/peerline/README.md.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/peerline/peerline/pkg/dialplan"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/privacy"
	"github.com/peerline/peerline/pkg/trunkconfig"
)

// DefaultPath is where peerlined looks without -config.
const DefaultPath = "/etc/peerline/peerlined.json"

// MaxSize bounds the file we are willing to read; a config is a few KiB.
const MaxSize = 1 << 20

// Config is the whole daemon configuration.
type Config struct {
	// Name is this node's name as shown to peers and in logs.
	Name string `json:"name"`
	// Prefix starts every name the daemon creates: namespaces <prefix>-<i>,
	// links <prefix>v<i>, WireGuard devices <prefix><i>. Several simulated
	// Pis share one machine in the lab by using different prefixes.
	Prefix string `json:"prefix,omitempty"`
	// StateDir keeps what must survive reboots (node key, applied peers).
	StateDir string `json:"state_dir,omitempty"`
	// RunDir keeps what lives as long as the daemon (lock, status).
	RunDir string `json:"run_dir,omitempty"`
	// PrivateKeyFile is the node's WireGuard key; made on first start.
	PrivateKeyFile string `json:"private_key_file,omitempty"`
	// ListenPort is the UDP port every tunnel, the rendezvous registration
	// and hole punching share (pkg/wgmux).
	ListenPort int `json:"listen_port,omitempty"`
	// MTU is the largest IP packet a tunnel carries to its peer; the
	// rewriter fragments what is larger. The default, DefaultMTU, fits
	// every path of at least 1280 bytes (see docs/mtu.md): raise it only
	// for an uplink known to carry more end to end.
	MTU int `json:"mtu,omitempty"`
	// PhonePort is the Ethernet interface the phones are plugged into.
	PhonePort string `json:"phone_port"`
	// Lines are the local phone lines s; each gets 10.0.s.2/30 on PhonePort.
	Lines []int `json:"lines"`
	// Peers are the paired remote nodes.
	Peers []Peer `json:"peers"`
	// Phones configures what the Pi serves on the phone port: DHCP and
	// provisioning, so a plugged-in phone needs nothing typed.
	Phones Phones `json:"phones,omitempty"`
	// Rendezvous are the servers this node registers with; pairing and
	// hole punching work while any one shared with the peer is up.
	Rendezvous []Rendezvous `json:"rendezvous,omitempty"`
	// LineLabels are the owner's names for local lines ("kitchen"), shown
	// in the console and `peerline phones`.
	LineLabels map[int]string `json:"line_labels,omitempty"`
	// Console configures the web console (pkg/console).
	Console Console `json:"console,omitempty"`
	// SIP configures the Pi's SIP service on the phone port: the
	// registrar and the dial plan (pkg/sipservice, docs/sip-service.md).
	SIP SIP `json:"sip,omitempty"`
	// Trunks are outside SIP accounts (a provider or a company PBX) the
	// Pi registers with over the uplink (pkg/trunk, docs/sip-service.md).
	Trunks []trunkconfig.Config `json:"trunks,omitempty"`
	// Anonymous is what happens to incoming calls that withhold the
	// caller's identity: accept, refuse (433) or ring another line, by
	// default and per trunk.
	Anonymous privacy.Policy `json:"anonymous,omitzero"`
	// Withhold hides the caller's identity on outgoing trunk calls: for
	// one call dialled after a prefix, or always from some lines.
	Withhold privacy.Withhold `json:"withhold,omitzero"`
}

// SIP configures the Pi's SIP service. It is on by default; a phone that
// never registers calls and is called by address exactly as without it.
type SIP struct {
	// Off turns the service off: nothing listens on UDP 5060 of the
	// phone port and the phones are provisioned without an account.
	Off bool `json:"off,omitempty"`
	// Digest is what the registrar's challenges offer: "" (SHA-256 first,
	// MD5 second, RFC 8760) or "md5" (MD5 alone, for phones that give up
	// on a challenge naming an algorithm they lack).
	Digest string `json:"digest,omitempty"`
	// DialPlan rules are tried, first match wins, before short numbers and
	// names (pkg/dialplan).
	DialPlan []dialplan.Rule `json:"dial_plan,omitempty"`
}

// Console configures where the web console is served. It is always served
// on the phone port and on the uplink's private (RFC 1918, IPv6 ULA)
// addresses, never to a peer through a tunnel.
type Console struct {
	// PublicUplink serves it on a public uplink address too; off by
	// default, because anyone on the Internet could then try passwords.
	PublicUplink bool `json:"public_uplink,omitempty"`
	// MetricsToken, when set, lets a scraper read /metrics with
	// "Authorization: Bearer <token>" instead of a console login.
	MetricsToken string `json:"metrics_token,omitempty"`
}

// Rendezvous is one rendezvous server (cmd/rendezvousd).
type Rendezvous struct {
	// Address is host:port of its main port (3478 by default).
	Address string `json:"address"`
	// Address2 is its second port, host:port; empty means the same host,
	// the main port + 1.
	Address2 string `json:"address2,omitempty"`
	// Key is the server's public key, as `rendezvousd -public-key` prints.
	Key nodekey.Key `json:"key"`
}

// String is how people write a server: "host:port KEY".
func (r Rendezvous) String() string { return r.Address + " " + r.Key.String() }

// Phones is the phone-port service configuration.
type Phones struct {
	// DHCP turns on the DHCP server on the phone port: each new phone gets
	// the next free line and its /30. Lines listed in Config.Lines stay
	// static and are never handed out.
	DHCP bool `json:"dhcp,omitempty"`
	// TimeZone is the IANA zone written into phone configs, e.g.
	// "Europe/Berlin"; empty means UTC.
	TimeZone string `json:"time_zone,omitempty"`
	// Internet lets the phones reach the uplink and beyond, masqueraded
	// behind the Pi's uplink address. Off, they reach the Pi's services,
	// the other lines and the tunnels only (pkg/firewall).
	Internet bool `json:"internet,omitempty"`
}

// Peer is one remote node reached through its own tunnel.
type Peer struct {
	// Index is i in 10.i.s.p: how this node numbers that peer.
	Index int `json:"index"`
	// Name is a label for people.
	Name string `json:"name,omitempty"`
	// PublicKey is the peer's WireGuard public key (base64).
	PublicKey nodekey.Key `json:"public_key"`
	// Endpoint is the peer's UDP address, IP:port, when it is fixed and
	// known; empty means it is found through the rendezvous servers.
	Endpoint string `json:"endpoint,omitempty"`
	// Keepalive is WireGuard's persistent keepalive in seconds; 0 is off.
	Keepalive int `json:"keepalive,omitempty"`
	// Lines are the peer's phone lines as it announced them, for the
	// phonebook; empty means line 1 only.
	Lines []int `json:"lines,omitempty"`
	// LineLabels are the peer's own names for its lines ("kitchen"), as
	// it announced them, so that a phone here can dial "bob.kitchen" or
	// sip:kitchen@bob; they are the peer's words, never ours.
	LineLabels map[int]string `json:"line_labels,omitempty"`
	// Renamed means the owner chose Name here (console or `peerline
	// rename`), so the name the peer announces no longer replaces it.
	Renamed bool `json:"renamed,omitempty"`
}

// DefaultMTU is the tunnel MTU unless the config says otherwise: the
// largest multiple of 16 (WireGuard pads to 16) whose encrypted datagram
// still fits a 1280-byte path in the worst case, relayed over IPv6: 1184 +
// 32 (WireGuard) + 12 (relay header) + 8 (UDP) + 40 (IPv6) = 1276. Paths
// smaller than the 1500 bytes of Ethernet are common (DS-Lite, PPPoE,
// mobile) and often drop the ICMP that would tell a sender; a desk phone's
// media never comes near this size, and a large SIP message costs one more
// fragment (docs/mtu.md).
const DefaultMTU = 1184

const (
	defaultPrefix     = "pl"
	defaultListenPort = 51820
	// maxPrefix keeps <prefix>v<253> inside the kernel's 15-byte link names.
	maxPrefix = 11
	// maxLabel bounds a line label; it is shown in narrow table cells.
	maxLabel = 63
)

var (
	// A prefix ends in a letter so that one node's names can never parse as
	// another prefix's names plus an index (pl + 1 + 7 vs pl1 + 7).
	prefixRE = regexp.MustCompile(`^[a-z]([a-z0-9]*[a-z])?$`)
	ifnameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	// Zone names as in the tz database: Area/Location, or UTC and the like.
	timeZoneRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$`)
	hostnameRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("config file %s does not exist: pass -config with the right file, or write one: %s", path, exampleHint)
		}
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config %s: %w", path, err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes and validates a config held in memory.
func Parse(b []byte) (*Config, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("file is larger than %d bytes; is it the right file?", MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, describeJSONError(b, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: extra data after the closing brace; the config is one JSON object", position(b, dec.InputOffset()))
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate fills in defaults and checks every field, returning the first
// problem found.
func (c *Config) Validate() error {
	if c.Prefix == "" {
		c.Prefix = defaultPrefix
	}
	if len(c.Prefix) > maxPrefix || !prefixRE.MatchString(c.Prefix) {
		return fmt.Errorf("prefix %q: use 1 to %d lower-case letters and digits, starting and ending with a letter", c.Prefix, maxPrefix)
	}
	if c.StateDir == "" {
		c.StateDir = "/var/lib/" + c.Prefix
	}
	if c.RunDir == "" {
		c.RunDir = "/run/" + c.Prefix
	}
	for _, d := range []struct{ key, val string }{{"state_dir", c.StateDir}, {"run_dir", c.RunDir}} {
		if !filepath.IsAbs(d.val) {
			return fmt.Errorf("%s %q must be an absolute path", d.key, d.val)
		}
	}
	if c.PrivateKeyFile == "" {
		c.PrivateKeyFile = filepath.Join(c.StateDir, "node.key")
	}
	if c.ListenPort == 0 {
		c.ListenPort = defaultListenPort
	}
	if c.ListenPort < 1 || c.ListenPort > 65535 {
		return fmt.Errorf("listen_port %d: use a port from 1 to 65535", c.ListenPort)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 576 || c.MTU > 9000 {
		return fmt.Errorf("mtu %d: use 576 to 9000, or leave it out for %d, which fits every path of at least 1280 bytes", c.MTU, DefaultMTU)
	}
	if !ifnameRE.MatchString(c.PhonePort) {
		return fmt.Errorf("phone_port %q: name the Ethernet interface the phones are plugged into, e.g. \"eth0\"", c.PhonePort)
	}
	if err := validLines(c.Lines); err != nil {
		return err
	}
	seenIndex := map[int]bool{}
	seenKey := map[nodekey.Key]int{}
	for n := range c.Peers {
		p := &c.Peers[n]
		where := fmt.Sprintf("peers[%d]", n)
		if p.Name != "" {
			where += fmt.Sprintf(" (%s)", p.Name)
		}
		if !numplan.ValidNode(p.Index) {
			return fmt.Errorf("%s: index %d: use %d to %d", where, p.Index, numplan.MinNode, numplan.MaxNode)
		}
		if seenIndex[p.Index] {
			return fmt.Errorf("%s: index %d is used by another peer; each peer needs its own", where, p.Index)
		}
		seenIndex[p.Index] = true
		if p.PublicKey.IsZero() {
			return fmt.Errorf("%s: public_key is missing; ask the peer for the output of `peerlined -public-key`", where)
		}
		if other, dup := seenKey[p.PublicKey]; dup {
			return fmt.Errorf("%s: public_key is the same as peers[%d]'s; one node cannot be paired twice", where, other)
		}
		seenKey[p.PublicKey] = n
		switch _, err := netip.ParseAddrPort(p.Endpoint); {
		case p.Endpoint == "" && len(c.Rendezvous) == 0:
			return fmt.Errorf("%s: no endpoint and no rendezvous server to find the peer through: add a rendezvous server, or the peer's fixed IP:port as endpoint", where)
		case p.Endpoint != "" && err != nil:
			return fmt.Errorf("%s: endpoint %q: want IP:port, e.g. \"198.51.100.7:51820\", or leave it out to find the peer through the rendezvous servers", where, p.Endpoint)
		}
		if p.Keepalive < 0 || p.Keepalive > 65535 {
			return fmt.Errorf("%s: keepalive %d: use 0 (off) to 65535 seconds", where, p.Keepalive)
		}
		if err := validLines(p.Lines); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if err := validLabels(p.LineLabels); err != nil {
			return fmt.Errorf("%s: line_labels: %w", where, err)
		}
	}
	if tz := c.Phones.TimeZone; tz != "" && !timeZoneRE.MatchString(tz) {
		return fmt.Errorf("phones.time_zone %q: use an IANA zone name such as \"Europe/Berlin\", or leave it out for UTC", tz)
	}
	if err := validLabels(c.LineLabels); err != nil {
		return fmt.Errorf("line_labels: %w", err)
	}
	if t := c.Console.MetricsToken; t != "" && (len(t) < 16 || strings.ContainsFunc(t, func(r rune) bool { return r <= ' ' || r > '~' })) {
		return errors.New("console.metrics_token: use at least 16 printable characters without spaces (e.g. from `openssl rand -hex 16`), or leave it out")
	}
	switch c.SIP.Digest {
	case "", "md5":
	default:
		return fmt.Errorf("sip.digest %q: use \"md5\" for phones that only know MD5, or leave it out for SHA-256 and MD5", c.SIP.Digest)
	}
	if _, err := dialplan.Compile(c.SIP.DialPlan); err != nil {
		return fmt.Errorf("sip.dial_plan: %w", err)
	}
	if err := c.validateTrunks(); err != nil {
		return err
	}
	for n, r := range c.Rendezvous {
		if err := validHostPort(r.Address); err != nil {
			return fmt.Errorf("rendezvous[%d] address %q: %w", n, r.Address, err)
		}
		if r.Address2 != "" {
			if err := validHostPort(r.Address2); err != nil {
				return fmt.Errorf("rendezvous[%d] address2 %q: %w", n, r.Address2, err)
			}
		}
		if r.Key.IsZero() {
			return fmt.Errorf("rendezvous[%d] %s: key is missing; it is what `rendezvousd -public-key` prints on the server", n, r.Address)
		}
	}
	return nil
}

// validateTrunks checks trunks, anonymous and withhold against the lines
// the node may have: the config's, or with DHCP every line, since DHCP
// hands lines out as phones come.
func (c *Config) validateTrunks() error {
	lines := c.Lines
	if c.Phones.DHCP {
		lines = nil
		for l := numplan.MinLine; l <= numplan.MaxLine; l++ {
			lines = append(lines, l)
		}
	}
	if err := trunkconfig.ValidateAll(c.Trunks, lines); err != nil {
		return err
	}
	for i, r := range c.SIP.DialPlan {
		name, ok := strings.CutPrefix(r.Target, "trunk:")
		if ok && !slices.ContainsFunc(c.Trunks, func(t trunkconfig.Config) bool { return t.Name == name }) {
			return fmt.Errorf("sip.dial_plan rule %d (match %q): no trunk is called %q; add it to \"trunks\" or change the target", i+1, r.Match, name)
		}
	}
	if err := c.Anonymous.Validate(lines); err != nil {
		return err
	}
	for name := range c.Anonymous.Trunks {
		if !slices.ContainsFunc(c.Trunks, func(t trunkconfig.Config) bool { return t.Name == name }) {
			return fmt.Errorf("anonymous.trunks: no trunk is called %q; use a name from \"trunks\"", name)
		}
	}
	if err := c.Withhold.Validate(lines); err != nil {
		return err
	}
	return nil
}

// validLines checks a list of line numbers: in range and each once.
func validLines(lines []int) error {
	seen := map[int]bool{}
	for _, s := range lines {
		if !numplan.ValidLine(s) {
			return fmt.Errorf("lines: %d is not a line number; use %d to %d", s, numplan.MinLine, numplan.MaxLine)
		}
		if seen[s] {
			return fmt.Errorf("lines: %d is listed twice", s)
		}
		seen[s] = true
	}
	return nil
}

// validHostPort accepts "host:port" with a DNS name or an IP literal.
func validHostPort(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return errors.New(`want host:port, e.g. "rv.example.org:3478"`)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: use 1 to 65535", port)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !hostnameRE.MatchString(host) {
		return fmt.Errorf("host %q is neither an IP address nor a DNS name", host)
	}
	return nil
}

// Names derives every name the daemon creates for peer i from the prefix,
// so that --cleanup can find them all again without any state.
type Names struct{ Prefix string }

// Namespace is the per-peer namespace, <prefix>-<i>.
func (n Names) Namespace(i int) string { return n.Prefix + "-" + strconv.Itoa(i) }

// Veth is the root end of the veth pair into the peer's namespace.
func (n Names) Veth(i int) string { return n.VethPrefix() + strconv.Itoa(i) }

// VethPrefix starts every root-side veth end of this prefix.
func (n Names) VethPrefix() string { return n.Prefix + "v" }

// Device is the WireGuard device and its TUN, <prefix><i>; wireguard-go's
// UAPI socket directory is shared by all namespaces, so this must be unique
// on the machine.
func (n Names) Device(i int) string { return n.Prefix + strconv.Itoa(i) }

// VethInNamespace is the peer-side end; it lives alone in its namespace.
const VethInNamespace = "veth0"

// ParseNamespace returns i if name is a per-peer namespace of this prefix.
func (n Names) ParseNamespace(name string) (int, bool) { return n.parse(name, "-") }

// ParseVeth returns i if name is a root-side veth end of this prefix.
func (n Names) ParseVeth(name string) (int, bool) { return n.parse(name, "v") }

// ParseDevice returns i if name is a WireGuard device of this prefix.
func (n Names) ParseDevice(name string) (int, bool) { return n.parse(name, "") }

func (n Names) parse(name, sep string) (int, bool) {
	head := n.Prefix + sep
	if len(name) <= len(head) || name[:len(head)] != head {
		return 0, false
	}
	rest := name[len(head):]
	if rest[0] < '1' || rest[0] > '9' {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	if err != nil || !numplan.ValidNode(i) {
		return 0, false
	}
	return i, true
}

// validLabels checks line labels, ours or a peer's: both are shown in
// narrow table cells and in phone directories.
func validLabels(labels map[int]string) error {
	for l, label := range labels {
		if !numplan.ValidLine(l) {
			return fmt.Errorf("line %d: use %d to %d", l, numplan.MinLine, numplan.MaxLine)
		}
		if len(label) > maxLabel || strings.ContainsFunc(label, unicode.IsControl) {
			return fmt.Errorf("line %d: a label is at most %d bytes, without control characters", l, maxLabel)
		}
	}
	return nil
}
