// Package privacy decides what happens to calls that withhold the caller's
// identity, and what a call that withholds its own identity must change in
// its headers. It holds no sockets and imports only the standard library:
// the header values it reads come from peers and providers and are
// treated as hostile (bounded, never trusted to be well formed).
//
// An incoming call is anonymous when any of these holds:
//   - its Privacy header (RFC 3323 §4.2) asks to hide the identity: the
//     values "id" (RFC 3325), "user" or "header";
//   - its From URI is RFC 3323's anonymous one, anonymous@anonymous.invalid,
//     or any URI whose user is "anonymous" or whose host is
//     "anonymous.invalid" (providers vary);
//   - its From display name is "Anonymous" (RFC 3323 §4.1.1.3 recommends it;
//     some PBXs send only that).
//
// Privacy "none" and "session" alone are not anonymity: "session" hides the
// media path, not who calls.
//
// The policy is per source (a peer by name, a trunk by name) with a
// default: accept, refuse with 433 Anonymity Disallowed (RFC 5079), or ring
// a chosen line instead of the dialled one.
package privacy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/peerline/peerline/pkg/numplan"
)

// MaxHeader bounds how much of a header value is read; longer values are
// cut, which can only make a call look less anonymous than a longer header
// claims (the policy then treats it as an ordinary call).
const MaxHeader = 1024

// Headers are the raw values of an INVITE's identity header fields, as
// received (all may be empty).
type Headers struct {
	From    string
	Privacy string
}

// Why says what made a call anonymous; zero means it is not.
type Why int

const (
	NotAnonymous Why = iota
	PrivacyHeader
	AnonymousURI
	AnonymousDisplay
)

func (w Why) String() string {
	switch w {
	case PrivacyHeader:
		return "Privacy header"
	case AnonymousURI:
		return "anonymous From URI"
	case AnonymousDisplay:
		return "From display name Anonymous"
	}
	return "not anonymous"
}

// Classify says whether a call withholds its caller's identity, and why.
func Classify(h Headers) Why {
	if privacyHides(bound(h.Privacy)) {
		return PrivacyHeader
	}
	display, uri := ParseNameAddr(bound(h.From))
	user, host := userHost(uri)
	if strings.EqualFold(user, "anonymous") || strings.EqualFold(host, "anonymous.invalid") {
		return AnonymousURI
	}
	if strings.EqualFold(display, "anonymous") {
		return AnonymousDisplay
	}
	return NotAnonymous
}

func bound(s string) string {
	if len(s) > MaxHeader {
		return s[:MaxHeader]
	}
	return s
}

// privacyHides reads a Privacy value: priv-values separated by ";"
// (RFC 3323 §4.2); several header lines arrive joined by ",".
func privacyHides(v string) bool {
	for _, tok := range strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == ',' }) {
		switch strings.ToLower(strings.TrimSpace(tok)) {
		case "id", "user", "header":
			return true
		}
	}
	return false
}

// ParseNameAddr splits a From/To value into its display name (unquoted,
// unescaped) and URI (without angle brackets, URI parameters kept, header
// parameters such as tag dropped). It never fails: what it cannot read
// comes back empty.
func ParseNameAddr(v string) (display, uri string) {
	v = strings.TrimSpace(v)
	if lt := indexUnquoted(v, '<'); lt >= 0 {
		display = unquote(strings.TrimSpace(v[:lt]))
		rest := v[lt+1:]
		if gt := strings.IndexByte(rest, '>'); gt >= 0 {
			return display, strings.TrimSpace(rest[:gt])
		}
		return display, ""
	}
	// addr-spec without brackets: parameters after ';' belong to the
	// header, not the URI (RFC 3261 §20.10).
	if semi := strings.IndexByte(v, ';'); semi >= 0 {
		v = v[:semi]
	}
	return "", strings.TrimSpace(v)
}

// indexUnquoted finds c outside a quoted string.
func indexUnquoted(s string, c byte) int {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch {
		case quoted && s[i] == '\\':
			i++
		case s[i] == '"':
			quoted = !quoted
		case !quoted && s[i] == c:
			return i
		}
	}
	return -1
}

func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	s = s[1 : len(s)-1]
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// userHost reads the user and host of a sip:, sips: or tel: URI.
func userHost(uri string) (user, host string) {
	scheme, rest, ok := strings.Cut(uri, ":")
	if !ok {
		return "", ""
	}
	switch strings.ToLower(scheme) {
	case "tel":
		user, _, _ = strings.Cut(rest, ";")
		return user, ""
	case "sip", "sips":
	default:
		return "", ""
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		user, rest = rest[:at], rest[at+1:]
		user, _, _ = strings.Cut(user, ":") // user:password
		user, _, _ = strings.Cut(user, ";") // user parameters
	}
	host = rest
	if i := strings.IndexAny(host, ";?"); i >= 0 {
		host = host[:i]
	}
	if strings.HasPrefix(host, "[") {
		if end := strings.IndexByte(host, ']'); end >= 0 {
			return user, host[:end+1]
		}
	}
	host, _, _ = strings.Cut(host, ":")
	return user, host
}

// Action is what a policy does with an anonymous call.
type Action string

const (
	Accept   Action = "accept"
	Refuse   Action = "refuse"   // 433 Anonymity Disallowed
	Redirect Action = "redirect" // ring Line instead
)

// StatusAnonymityDisallowed is RFC 5079's response code.
const StatusAnonymityDisallowed = 433

// Rule is the policy for one source: the config's shape.
type Rule struct {
	Action Action `json:"action"`
	// Line is the line to ring for Redirect (numplan.MinLine..MaxLine).
	Line int `json:"line,omitempty"`
}

func (r Rule) validate() error {
	switch r.Action {
	case Accept, Refuse:
		if r.Line != 0 {
			return fmt.Errorf("line %d is only for action %q", r.Line, Redirect)
		}
	case Redirect:
		if !numplan.ValidLine(r.Line) {
			return fmt.Errorf("action %q needs a line %d..%d to ring, got %d", Redirect, numplan.MinLine, numplan.MaxLine, r.Line)
		}
	default:
		return fmt.Errorf("action %q: want accept, refuse or redirect", r.Action)
	}
	return nil
}

// Policy is the config's "anonymous" section: a default and overrides per
// peer (by the name it paired with) and per trunk (by its configured name).
// The zero Policy accepts every call, as a phone line does by default.
type Policy struct {
	Default Rule            `json:"default,omitzero"`
	Peers   map[string]Rule `json:"peers,omitempty"`
	Trunks  map[string]Rule `json:"trunks,omitempty"`
}

// Validate checks every rule; errors name the entry and say what to write.
// lines are the node's lines (a redirect target must be one).
func (p Policy) Validate(lines []int) error {
	check := func(where string, r Rule) error {
		if r.Action == "" && r.Line == 0 && where == "default" {
			return nil
		}
		if err := r.validate(); err != nil {
			return fmt.Errorf("anonymous calls, %s: %w", where, err)
		}
		if r.Action == Redirect && !slices.Contains(lines, r.Line) {
			return fmt.Errorf("anonymous calls, %s: line %d is not one of this node's lines %v", where, r.Line, lines)
		}
		return nil
	}
	if err := check("default", p.Default); err != nil {
		return err
	}
	for name, r := range p.Peers {
		if err := check(fmt.Sprintf("peer %q", name), r); err != nil {
			return err
		}
	}
	for name, r := range p.Trunks {
		if err := check(fmt.Sprintf("trunk %q", name), r); err != nil {
			return err
		}
	}
	return nil
}

// SourceKind says where a call came from.
type SourceKind int

const (
	FromPeer SourceKind = iota
	FromTrunk
)

// Source names where a call came from: a peer's name or a trunk's name.
type Source struct {
	Kind SourceKind
	Name string
}

// Decision is what to do with one incoming call.
type Decision struct {
	Action Action
	Line   int    // Redirect: the line to ring instead
	Code   int    // Refuse: the SIP status (433)
	Why    Why    // why the call counts as anonymous
	Reason string // for logs and status
}

// RuleFor is the rule for calls from src: its own entry if it has one,
// else the default; where names which ("default" or the source's name).
// The packet rewriter takes its peer's rule from here, the trunks use
// Decide: one lookup for both.
func (p Policy) RuleFor(src Source) (r Rule, where string) {
	m := p.Peers
	if src.Kind == FromTrunk {
		m = p.Trunks
	}
	if o, ok := m[src.Name]; ok {
		return o, src.Name
	}
	return p.Default, "default"
}

// Decide applies the policy to one call: an identified caller is always
// accepted; an anonymous one gets the source's rule, else the default.
func (p Policy) Decide(src Source, h Headers) Decision {
	why := Classify(h)
	if why == NotAnonymous {
		return Decision{Action: Accept, Reason: "caller identified"}
	}
	r, where := p.RuleFor(src)
	switch r.Action {
	case Refuse:
		return Decision{Action: Refuse, Code: StatusAnonymityDisallowed, Why: why,
			Reason: fmt.Sprintf("anonymous (%s) refused by policy %s", why, where)}
	case Redirect:
		return Decision{Action: Redirect, Line: r.Line, Why: why,
			Reason: fmt.Sprintf("anonymous (%s) sent to line %d by policy %s", why, r.Line, where)}
	}
	return Decision{Action: Accept, Why: why, Reason: fmt.Sprintf("anonymous (%s) accepted by policy %s", why, where)}
}
