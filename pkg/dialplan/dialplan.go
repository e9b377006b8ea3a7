// Package dialplan decides where a number or name dialled on a phone goes:
// one of the node's own lines, a line of a paired node, an outside trunk,
// or nowhere (a SIP refusal code). It is the routing table of the Pi's SIP
// service; it holds no sockets and is tested with tables.
//
// Dialling, in the order tried (docs/sip-service.md has the user's view):
//
//  1. the configured rules, first match wins (modelled on Yate's
//     regexroute: a regular expression on what was dialled, an optional
//     rewrite with $1-style groups, and a target);
//  2. short numbers: `<s>` is local line s; `<i>*<s>` is line s of peer i
//     (the same digits as its address 10.i.s.1, with `*` for the dots, so a
//     user who knows one knows the other); `<i>*` is line 1 of peer i;
//  3. names: `<label>` one of this node's lines by its label;
//     `<peer-name>` that peer's line 1; `<peer-name>.<s>` its line s and
//     `<peer-name>.<label>` its line by the label the peer announced;
//     `<label>` alone a peer's line, when no line here has that label and
//     only one peer line has it.
//
// Anything else is refused with 404, so a typo never rings a stranger.
//
// Ambiguity is settled so that what the owner named never changes
// because of what a peer announces (a peer chooses its own name and its
// lines' labels): our own labels come before peers' names, peers' names
// before their labels. A number is always a line number: a label made of
// digits only is never matched as a label (dial that line by number).
// Two lines that one dialled label would reach at the same level are
// refused with 485 Ambiguous rather than guessed, and the reason says to
// dial by number.
package dialplan

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/peerline/peerline/pkg/numplan"
)

// Kind says what a Decision targets.
type Kind int

const (
	Refuse Kind = iota
	Local       // one of this node's lines
	Peer        // a line of a paired node
	Trunk       // an outside SIP account
)

func (k Kind) String() string {
	return [...]string{"refuse", "local", "peer", "trunk"}[k]
}

// Decision is where a dialled string goes.
type Decision struct {
	Kind  Kind
	Peer  int    // Peer: the peer's index i (10.i.s.1)
	Line  int    // Local, Peer: the line s
	Trunk string // Trunk: the trunk's name
	// Number is what the trunk is asked to call (after a rule's rewrite).
	Number string
	Code   int    // Refuse: the SIP status code
	Reason string // why, for logs, status and the console
}

// MaxDialled bounds what Route reads: a dial string comes from a phone
// or from a SIP request of a peer and is treated as hostile.
const MaxDialled = 128

// Rule is one configured dial-plan rule, as written in the config.
type Rule struct {
	// Match is a Go regular expression (RE2: linear time, no
	// backtracking) matched against the whole dialled string.
	Match string `json:"match"`
	// Rewrite, if set, replaces the dialled string ($1, ${name}).
	Rewrite string `json:"rewrite,omitempty"`
	// Target is one of "line:<s>", "peer:<name or index>[.<s>]",
	// "trunk:<name>", "refuse:<code>".
	Target string `json:"target"`
}

// PeerInfo is what the plan knows of a paired node.
type PeerInfo struct {
	Index int
	Name  string
	// Labels are line → label as the peer announced them (its own
	// words: config.Peer.LineLabels).
	Labels map[int]string
}

// Env is the node's view the plan routes against; it changes with every
// pairing, so it is passed to each Route rather than compiled in.
type Env struct {
	Node  string // this node's name: sip:<line or label>@<Node> is local
	Lines int    // this node's lines, 1..Lines (when LineSet is nil)
	// LineSet, when not nil, lists this node's lines exactly (a node's
	// lines need not be contiguous: DHCP hands them out as phones come).
	LineSet []int
	Labels  map[int]string // this node's line labels
	Peers   []PeerInfo
	Trunks  []string
}

// Plan is a compiled rule list.
type Plan struct {
	rules []compiled
}

type compiled struct {
	re      *regexp.Regexp
	rewrite string
	target  target
	src     Rule
}

type target struct {
	kind  Kind
	peer  string // name or index, resolved at Route time
	line  int
	trunk string
	code  int
}

// Compile checks rules and returns the plan. Errors name the rule and say
// what is wrong, since they reach the user through -check-config and the
// console.
func Compile(rules []Rule) (*Plan, error) {
	p := &Plan{}
	for i, r := range rules {
		re, err := regexp.Compile("^(?:" + r.Match + ")$")
		if err != nil {
			return nil, fmt.Errorf("dial plan rule %d: match %q is not a regular expression: %w", i+1, r.Match, err)
		}
		t, err := parseTarget(r.Target)
		if err != nil {
			return nil, fmt.Errorf("dial plan rule %d (match %q): %w", i+1, r.Match, err)
		}
		p.rules = append(p.rules, compiled{re: re, rewrite: r.Rewrite, target: t, src: r})
	}
	return p, nil
}

var errTarget = errors.New(`target must be "line:<n>", "peer:<name or index>[.<line>]", "trunk:<name>" or "refuse:<code>"`)

func parseTarget(s string) (target, error) {
	kind, arg, ok := strings.Cut(s, ":")
	if !ok || arg == "" {
		return target{}, fmt.Errorf("target %q: %w", s, errTarget)
	}
	switch kind {
	case "line":
		n, err := strconv.Atoi(arg)
		if err != nil || !numplan.ValidLine(n) {
			return target{}, fmt.Errorf("target %q: line must be a number from %d to %d", s, numplan.MinLine, numplan.MaxLine)
		}
		return target{kind: Local, line: n}, nil
	case "peer":
		name, line := arg, 1
		if i := strings.LastIndexByte(arg, '.'); i >= 0 {
			n, err := strconv.Atoi(arg[i+1:])
			if err != nil || !numplan.ValidLine(n) {
				return target{}, fmt.Errorf("target %q: the line after the dot must be a number from %d to %d", s, numplan.MinLine, numplan.MaxLine)
			}
			name, line = arg[:i], n
		}
		if name == "" {
			return target{}, fmt.Errorf("target %q: %w", s, errTarget)
		}
		return target{kind: Peer, peer: name, line: line}, nil
	case "trunk":
		return target{kind: Trunk, trunk: arg}, nil
	case "refuse":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 400 || n > 699 {
			return target{}, fmt.Errorf("target %q: a refusal is a SIP status from 400 to 699 (404 not found, 403 forbidden, 603 decline)", s)
		}
		return target{kind: Refuse, code: n}, nil
	}
	return target{}, fmt.Errorf("target %q: %w", s, errTarget)
}

// Route decides where dialled goes.
func (p *Plan) Route(dialled string, env Env) Decision {
	if dialled == "" || len(dialled) > MaxDialled {
		return Decision{Kind: Refuse, Code: 484, Reason: "empty or too long a number"}
	}
	if p != nil {
		for i, r := range p.rules {
			m := r.re.FindStringSubmatchIndex(dialled)
			if m == nil {
				continue
			}
			number := dialled
			if r.rewrite != "" {
				number = string(r.re.ExpandString(nil, r.rewrite, dialled, m))
			}
			d := r.target.resolve(env, number)
			d.Reason = fmt.Sprintf("rule %d (%s): %s", i+1, r.src.Match, d.Reason)
			return d
		}
	}
	if d, ok := short(dialled, env); ok {
		return d
	}
	if d, ok := byName(dialled, env); ok {
		return d
	}
	return Decision{Kind: Refuse, Code: 404, Reason: "no line, peer or rule matches"}
}

// RouteURI decides where a SIP request for sip:<user>@<host> goes. Every
// line has the URI sip:<line or label>@<node name>: a host naming this node
// (or an IP address, such as the Pi's own 10.0.s.2 that phones send
// INVITEs to, or no host) routes user as dialled digits or a name; a host
// naming a paired peer routes user as that peer's line number or label.
// Node names are resolved through the peer table only, never DNS: any
// other host is refused with 404.
func (p *Plan) RouteURI(user, host string, env Env) Decision {
	if len(user) > MaxDialled || len(host) > MaxDialled {
		return Decision{Kind: Refuse, Code: 484, Reason: "too long an address"}
	}
	if host == "" || isIPLiteral(host) || (env.Node != "" && (strings.EqualFold(host, env.Node) || strings.EqualFold(host, HostName(env.Node)))) {
		return p.Route(user, env)
	}
	pi, ok := findPeerName(env, host)
	if !ok {
		return Decision{Kind: Refuse, Code: 404, Reason: fmt.Sprintf("no paired node is called %q", host)}
	}
	if n, ok := smallNumber(user); ok {
		return Decision{Kind: Peer, Peer: pi.Index, Line: n, Reason: "URI at " + pi.Name}
	}
	if user == "" {
		return Decision{Kind: Peer, Peer: pi.Index, Line: 1, Reason: "URI at " + pi.Name}
	}
	return peerLabel(pi, user)
}

// peerLabel is pi's line labelled label: 404 if none, 485 if several.
func peerLabel(pi PeerInfo, label string) Decision {
	found := labelled(pi.Labels, label)
	switch len(found) {
	case 0:
		return Decision{Kind: Refuse, Code: 404, Reason: fmt.Sprintf("%s has no line %q", pi.Name, label)}
	case 1:
		return Decision{Kind: Peer, Peer: pi.Index, Line: found[0], Reason: "label " + label + " at " + pi.Name}
	}
	return Decision{Kind: Refuse, Code: 485, Reason: fmt.Sprintf("lines %s at %s are labelled %q: dial one by number", joinInts(found), pi.Name, label)}
}

// labelled returns the lines whose label is label (case aside), in
// order. A label of digits only never matches: digits are line numbers.
func labelled(labels map[int]string, label string) []int {
	if label == "" || isDigits(label) {
		return nil
	}
	var out []int
	for s, l := range labels {
		if strings.EqualFold(l, label) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// HostName is a node name as the host part of a SIP URI: lower case,
// with every run of characters other than letters and digits made one
// "-" ("Alice's Pi" is alice-s-pi). URIs are matched by this form and by
// the name itself.
func HostName(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	return b.String()
}

// isIPLiteral says whether host is an IPv4 address or a bracketed IPv6 one.
func isIPLiteral(host string) bool {
	if strings.HasPrefix(host, "[") {
		return true
	}
	dots := 0
	for i := 0; i < len(host); i++ {
		switch c := host[i]; {
		case c == '.':
			dots++
		case c < '0' || c > '9':
			return false
		}
	}
	return dots == 3
}

func (t target) resolve(env Env, number string) Decision {
	switch t.kind {
	case Local:
		return local(env, t.line)
	case Peer:
		pi, ok := findPeer(env, t.peer)
		if !ok {
			return Decision{Kind: Refuse, Code: 404, Reason: fmt.Sprintf("no paired peer %q", t.peer)}
		}
		return Decision{Kind: Peer, Peer: pi.Index, Line: t.line, Reason: "peer " + pi.Name}
	case Trunk:
		for _, n := range env.Trunks {
			if n == t.trunk {
				return Decision{Kind: Trunk, Trunk: n, Number: number, Reason: "trunk " + n}
			}
		}
		return Decision{Kind: Refuse, Code: 503, Reason: fmt.Sprintf("no trunk %q is configured", t.trunk)}
	}
	return Decision{Kind: Refuse, Code: t.code, Reason: "refused by rule"}
}

func local(env Env, line int) Decision {
	if !env.hasLine(line) {
		return Decision{Kind: Refuse, Code: 404, Reason: fmt.Sprintf("this node has no line %d", line)}
	}
	return Decision{Kind: Local, Line: line, Reason: "local line"}
}

func (env Env) hasLine(line int) bool {
	if env.LineSet != nil {
		for _, s := range env.LineSet {
			if s == line {
				return true
			}
		}
		return false
	}
	return line >= 1 && line <= env.Lines
}

func findPeer(env Env, nameOrIndex string) (PeerInfo, bool) {
	if n, err := strconv.Atoi(nameOrIndex); err == nil {
		for _, p := range env.Peers {
			if p.Index == n {
				return p, true
			}
		}
		return PeerInfo{}, false
	}
	return findPeerName(env, nameOrIndex)
}

// findPeerName finds a peer by its name or the name's host-name form
// ("Bob's Pi" or bob-s-pi: the phonebook and the URIs use the latter).
// Digits are an index, never a name.
func findPeerName(env Env, name string) (PeerInfo, bool) {
	if name == "" || isDigits(name) {
		return PeerInfo{}, false
	}
	for _, p := range env.Peers {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	for _, p := range env.Peers {
		if h := HostName(p.Name); h != "" && strings.EqualFold(h, name) {
			return p, true
		}
	}
	return PeerInfo{}, false
}

// short reads `<s>`, `<i>*<s>` and `<i>*`.
func short(d string, env Env) (Decision, bool) {
	a, b, star := strings.Cut(d, "*")
	ai, ok := smallNumber(a)
	if !ok {
		return Decision{}, false
	}
	if !star {
		return local(env, ai), true
	}
	line := 1
	if b != "" {
		if line, ok = smallNumber(b); !ok {
			return Decision{}, false
		}
	}
	pi, found := findPeer(env, strconv.Itoa(ai))
	if !found {
		return Decision{Kind: Refuse, Code: 404, Reason: fmt.Sprintf("no peer %d", ai)}, true
	}
	return Decision{Kind: Peer, Peer: pi.Index, Line: line, Reason: "short number for " + pi.Name}, true
}

// smallNumber reads a line or node number: 1 to 3 digits without a
// leading zero, from 1 to numplan.MaxLine (254). A node index stops at
// numplan.MaxNode (253), but no peer has 254, so findPeer refuses it.
func smallNumber(s string) (int, bool) {
	if s == "" || len(s) > 3 || s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, numplan.ValidLine(n)
}

// byName reads names, in the order the package doc gives: our labels,
// `<peer>`, `<peer>.<s>`, `<peer>.<label>`, then peers' labels.
func byName(d string, env Env) (Decision, bool) {
	switch found := labelled(env.Labels, d); len(found) {
	case 0:
	case 1:
		// Ours even when the line is not up: 404 then, never a peer's.
		dec := local(env, found[0])
		dec.Reason = "label " + d + ": " + dec.Reason
		return dec, true
	default:
		return Decision{Kind: Refuse, Code: 485, Reason: fmt.Sprintf("lines %s here are labelled %q: dial one by number", joinInts(found), d)}, true
	}
	if pi, ok := findPeerName(env, d); ok {
		return Decision{Kind: Peer, Peer: pi.Index, Line: 1, Reason: "name " + pi.Name}, true
	}
	// <peer>.<line or label>. Names and labels may hold dots themselves,
	// so the name is the longest part before a dot that names a peer.
	for i := strings.LastIndexByte(d, '.'); i > 0; i = strings.LastIndexByte(d[:i], '.') {
		pi, ok := findPeerName(env, d[:i])
		if !ok {
			continue
		}
		rest := d[i+1:]
		if n, ok := smallNumber(rest); ok {
			return Decision{Kind: Peer, Peer: pi.Index, Line: n, Reason: "name " + pi.Name}, true
		}
		if isDigits(rest) {
			return Decision{Kind: Refuse, Code: 404, Reason: fmt.Sprintf("%s has no line %s", pi.Name, rest)}, true
		}
		return peerLabel(pi, rest), true
	}
	// A peer's label alone: only when it names one line of all peers.
	var found []Decision
	for _, p := range env.Peers {
		for _, s := range labelled(p.Labels, d) {
			found = append(found, Decision{Kind: Peer, Peer: p.Index, Line: s, Reason: "label " + d + " at " + p.Name})
		}
	}
	switch len(found) {
	case 0:
		return Decision{}, false
	case 1:
		return found[0], true
	}
	var where []string
	for _, f := range found {
		where = append(where, fmt.Sprintf("%d*%d", f.Peer, f.Line))
	}
	return Decision{Kind: Refuse, Code: 485, Reason: fmt.Sprintf("%d lines of peers are labelled %q (%s): dial <peer>.%s or a number", len(found), d, strings.Join(where, ", "), d)}, true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
