// Package trunkconfig is the config's shape for trunks (outside SIP
// accounts, run by pkg/trunk), with its validation. It imports only the
// standard library, so pkg/config, a pure leaf, can embed it:
//
//	Trunks []trunkconfig.Config `json:"trunks,omitempty"`
//
// and call ValidateAll(c.Trunks, c.Lines) from its Validate.
package trunkconfig

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Config is one trunk in the config's "trunks" list: an account at a SIP
// provider or a company PBX.
type Config struct {
	// Name identifies the trunk in dial-plan targets (trunk:<name>),
	// status and the anonymous-call policy.
	Name string `json:"name"`
	// Registrar is the provider's SIP server, host[:port] (UDP).
	Registrar string `json:"registrar"`
	// Domain is the account's SIP domain, if it differs from the
	// registrar's host.
	Domain string `json:"domain,omitempty"`
	// User is the account's user (often the phone number).
	User string `json:"user"`
	// AuthUser is the digest user name, if it differs from User.
	AuthUser string `json:"auth_user,omitempty"`
	// Password is the account's password. Never logged or shown.
	Password string `json:"password"`
	// CallerID is the display name sent with outgoing calls.
	CallerID string `json:"caller_id,omitempty"`
	// Lines ring together for the trunk's incoming calls; the first
	// to answer takes the call.
	Lines []int `json:"lines"`
	// Prefix, if set, sends numbers dialled with it through this trunk;
	// the prefix is removed (e.g. "0": 0301234 calls 301234).
	Prefix string `json:"prefix,omitempty"`
	// Expires asks the provider for this registration lifetime in
	// seconds (default 300; providers may shorten it).
	Expires int `json:"expires,omitempty"`
	// AcceptFrom lists addresses or prefixes (CIDR) besides the
	// registrar's own from which the provider sends calls. Calls from
	// anywhere else are refused: a cone NAT lets the whole Internet
	// reach the trunk's socket, and SIP scanners ring phones at night.
	AcceptFrom []string `json:"accept_from,omitempty"`
}

// AcceptPrefixes parses AcceptFrom.
func (c Config) AcceptPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.AcceptFrom {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("accept_from %q: want an IP address or a prefix such as 217.10.79.0/24", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// DefaultExpires is the registration lifetime asked for: short enough
// that a provider notices a Pi gone within minutes.
const DefaultExpires = 300

// SIPDomain is the account's domain: Domain, else the registrar's host.
func (c Config) SIPDomain() string {
	if c.Domain != "" {
		return c.Domain
	}
	host, _, err := net.SplitHostPort(c.Registrar)
	if err != nil {
		return c.Registrar
	}
	return host
}

// DigestUser is AuthUser, else User.
func (c Config) DigestUser() string {
	if c.AuthUser != "" {
		return c.AuthUser
	}
	return c.User
}

// ExpiresOrDefault is Expires, else DefaultExpires.
func (c Config) ExpiresOrDefault() int {
	if c.Expires > 0 {
		return c.Expires
	}
	return DefaultExpires
}

// RegistrarAddr is Registrar with the default port 5060.
func (c Config) RegistrarAddr() string {
	if _, _, err := net.SplitHostPort(c.Registrar); err == nil {
		return c.Registrar
	}
	return net.JoinHostPort(c.Registrar, "5060")
}

// Validate checks one trunk; lines are the node's lines (the config's
// "lines"). Errors name the trunk and say what to write.
func (c Config) Validate(lines []int) error {
	name := c.Name
	if name == "" {
		name = "(no name)"
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("trunk %s: %s", name, fmt.Sprintf(format, args...))
	}
	if c.Name == "" || strings.Trim(strings.ToLower(c.Name), "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" || len(c.Name) > 32 {
		return bad("name: want 1 to 32 letters, digits, - and _")
	}
	if c.Registrar == "" {
		return bad("registrar: want the provider's SIP server, host or host:port")
	}
	if low := strings.ToLower(c.Registrar); strings.ContainsAny(low, "/@ ") || strings.HasPrefix(low, "sip:") || strings.HasPrefix(low, "sips:") {
		return bad("registrar %q: want host or host:port, without sip: or a user", c.Registrar)
	}
	if host, port, err := net.SplitHostPort(c.Registrar); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
			return bad("registrar %q: want host or host:port with a port 1-65535", c.Registrar)
		}
	} else if strings.ContainsAny(c.Registrar, ":/@ ") {
		return bad("registrar %q: want host or host:port, without sip: or a user", c.Registrar)
	}
	if c.User == "" || strings.ContainsAny(c.User, "@:;<> \t\r\n") {
		return bad("user %q: want the account's user name as the provider gave it", c.User)
	}
	if c.Password == "" {
		return bad("password: empty; copy the account's SIP password from the provider")
	}
	if strings.ContainsAny(c.CallerID, "\r\n") {
		return bad("caller_id: no line breaks")
	}
	if len(c.Lines) == 0 {
		return bad("lines: name at least one line to ring for incoming calls")
	}
	for i, l := range c.Lines {
		if !slices.Contains(lines, l) {
			return bad("line %d is not one of this node's lines %v", l, lines)
		}
		if slices.Contains(c.Lines[:i], l) {
			return bad("line %d is listed twice", l)
		}
	}
	if len(c.Prefix) > 8 || strings.Trim(c.Prefix, "0123456789*#") != "" {
		return bad("prefix %q: want up to 8 of 0-9, * and #", c.Prefix)
	}
	if _, err := c.AcceptPrefixes(); err != nil {
		return bad("%v", err)
	}
	if c.Expires != 0 && (c.Expires < 60 || c.Expires > 86400) {
		return bad("expires %d: want 60 to 86400 seconds, or leave it out", c.Expires)
	}
	return nil
}

// ValidateAll checks the "trunks" list: each trunk, unique names, and
// prefixes where none is the start of another (which would make the
// shorter one unreachable or ambiguous).
func ValidateAll(trunks []Config, lines []int) error {
	var names []string
	for i, c := range trunks {
		if err := c.Validate(lines); err != nil {
			return err
		}
		if slices.Contains(names, c.Name) {
			return fmt.Errorf("trunk %s: the name is used twice; give each trunk its own", c.Name)
		}
		names = append(names, c.Name)
		for _, o := range trunks[:i] {
			if c.Prefix != "" && o.Prefix != "" && (strings.HasPrefix(c.Prefix, o.Prefix) || strings.HasPrefix(o.Prefix, c.Prefix)) {
				return fmt.Errorf("trunk %s: prefix %q overlaps trunk %s's %q; a dialled number must pick one trunk", c.Name, c.Prefix, o.Name, o.Prefix)
			}
		}
	}
	return nil
}

// Number returns what this trunk calls for a dialled string: the string
// without the trunk's prefix. ok is false when the trunk has a prefix and
// the string does not start with it, or nothing follows it.
func (c Config) Number(dialled string) (number string, ok bool) {
	if c.Prefix == "" {
		return dialled, dialled != ""
	}
	n, found := strings.CutPrefix(dialled, c.Prefix)
	if !found || n == "" {
		return "", false
	}
	return n, true
}
