package node

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/dialplan"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/registrar"
	"github.com/peerline/peerline/pkg/sipauth"
	"github.com/peerline/peerline/pkg/sipservice"
)

// sipPart is the Pi's SIP service as the node wires it: the registrar with
// the lines' generated passwords (kept in the state directory), the dial
// plan from the config, and the peers' names from the peer table. nil
// parts mean sip.off.
type sipPart struct {
	svc       *sipservice.Service
	reg       *registrar.Registrar
	passwords *registrar.Passwords

	// mu guards the compiled plan, recompiled when the config changes.
	mu      sync.Mutex
	planCfg *config.Config
	plan    *dialplan.Plan
}

// newSIP makes the SIP service, not started; nil with sip.off.
func (nd *node) newSIP(cfg *config.Config) error {
	if cfg.SIP.Off {
		return nil
	}
	pw, err := registrar.OpenPasswords(cfg.StateDir)
	if err != nil {
		return err
	}
	offer := sipauth.Both
	if cfg.SIP.Digest == "md5" {
		offer = sipauth.MD5
	}
	realm := dialplan.HostName(cfg.Name)
	if realm == "" {
		realm = "peerline"
	}
	log := nd.log.With("service", "sip")
	reg := registrar.New(sipauth.Config{Realm: realm, Offer: offer}, pw.Accounts, log)
	nd.sip = &sipPart{reg: reg, passwords: pw}
	nd.sip.svc = &sipservice.Service{Registrar: reg, Routes: nd.sipRoutes, Log: log,
		Withhold: func() string { return nd.cfg.Load().Withhold.Prefix }}
	if nd.trunks != nil {
		nd.sip.svc.Trunk = nd.trunkURI
	}
	return nil
}

// runSIP serves the SIP service on the phone port until ctx ends.
func (nd *node) runSIP(ctx context.Context) error {
	return nd.sip.svc.Run(ctx, nd.cfg.Load().PhonePort)
}

// sipRoutes is the plan and view the SIP service routes each INVITE
// against: the newest config's rules and the peer table as it is now, so
// a pairing or a rename applies to the next call.
func (nd *node) sipRoutes() (*dialplan.Plan, dialplan.Env) {
	cfg := nd.cfg.Load()
	return nd.sip.planFor(cfg, nd.log), sipEnv(cfg, nd.localLines())
}

func (s *sipPart) planFor(cfg *config.Config, log *slog.Logger) *dialplan.Plan {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.planCfg != cfg {
		// The config was validated, rules compiled once already; a
		// failure here would be a bug, and leaves the short numbers and
		// names working.
		p, err := dialplan.Compile(sipRules(cfg))
		if err != nil {
			log.Error("sip: dial plan", "err", err)
		}
		s.plan, s.planCfg = p, cfg
	}
	return s.plan
}

// sipRules are the config's dial-plan rules, then one per trunk with a
// prefix: <prefix>(.+) to trunk:<name> with the prefix removed. The
// config's rules come first, so a rule can send some of a trunk's numbers
// elsewhere (an emergency number to a line, say, or refuse premium
// numbers).
func sipRules(cfg *config.Config) []dialplan.Rule {
	rules := slices.Clone(cfg.SIP.DialPlan)
	for _, t := range cfg.Trunks {
		if t.Prefix != "" {
			rules = append(rules, dialplan.Rule{Match: regexp.QuoteMeta(t.Prefix) + "(.+)", Rewrite: "$1", Target: "trunk:" + t.Name})
		}
	}
	return rules
}

// sipEnv is the dial plan's view of the node: its lines and labels, and
// every paired peer by index and name with its lines' labels as it
// announced them, so bob.kitchen and sip:kitchen@bob reach its line.
func sipEnv(cfg *config.Config, lines []int) dialplan.Env {
	env := dialplan.Env{Node: cfg.Name, LineSet: slices.Clone(lines), Labels: cfg.LineLabels}
	if env.LineSet == nil {
		env.LineSet = []int{}
	}
	for _, p := range cfg.Peers {
		env.Peers = append(env.Peers, dialplan.PeerInfo{Index: p.Index, Name: p.Name, Labels: p.LineLabels})
	}
	for _, t := range cfg.Trunks {
		env.Trunks = append(env.Trunks, t.Name)
	}
	return env
}

// sipPassword is line's SIP password for its phone's configuration file,
// made on first use; "" with sip.off, so the phone is provisioned for
// direct calls only.
func (nd *node) sipPassword(line int) (string, error) {
	if nd.sip == nil {
		return "", nil
	}
	return nd.sip.passwords.Get(line)
}

// forget drops line's password and registration: the line's phone was
// forgotten, and whoever holds the line next gets a new password.
func (s *sipPart) forget(line int) error {
	if err := s.passwords.Forget(line); err != nil {
		return err
	}
	s.reg.Unbind(line)
	return nil
}

// lines answers `peerline lines`.
func (nd *node) lines(ctx context.Context) (control.Lines, error) {
	cfg := nd.cfg.Load()
	st, err := nd.sup.Status(ctx)
	if err != nil {
		return control.Lines{}, err
	}
	out := linesFrom(cfg, st.Lines)
	if nd.sip == nil {
		out.Service = "off (sip.off in the config): phones call by address only"
		return out, nil
	}
	out.Service = "on"
	if e := nd.sipErr.Load(); e != nil {
		out.Service = "not running: " + *e
	}
	bound := map[int]registrar.Binding{}
	for _, b := range nd.sip.reg.Bindings() {
		bound[b.Line] = b
	}
	for k := range out.Lines {
		l := &out.Lines[k]
		_, l.Account = nd.sip.passwords.Lookup(l.Line)
		if b, ok := bound[l.Line]; ok {
			l.Registration = &control.Registration{Contact: b.Contact, Source: b.Source.String(), UserAgent: b.UserAgent, Digest: b.Digest, Expires: b.Expires.UTC()}
		}
	}
	for _, c := range nd.sip.svc.Recent() {
		out.Decisions = append(out.Decisions, control.DialDecision(c))
	}
	rs := nd.sip.reg.Stats()
	out.Registrar = control.RegistrarCounts{Registered: rs.Registered, Unregistered: rs.Unregistered, Challenged: rs.Challenged, Refused: rs.Refused, Limited: rs.Limited}
	out.Calls = nd.sip.svc.Counts()
	return out, nil
}

// linesFrom is the part of `lines` that the config and the lines decide:
// every line's URIs and address, and every peer's lines as dialled here.
func linesFrom(cfg *config.Config, lines []int) control.Lines {
	host := dialplan.HostName(cfg.Name)
	out := control.Lines{Node: host, Lines: []control.Line{}, Peers: []control.PeerLine{}, Decisions: []control.DialDecision{}, Calls: map[string]uint64{}}
	for _, s := range lines {
		l := control.Line{Line: s, Label: cfg.LineLabels[s], Address: numplan.Phone(0, uint8(s))}
		l.URIs = lineURIs(s, l.Label, host)
		out.Lines = append(out.Lines, l)
	}
	for _, p := range cfg.Peers {
		peerLines := p.Lines
		if len(peerLines) == 0 {
			peerLines = []int{1}
		}
		ph := dialplan.HostName(p.Name)
		for _, s := range peerLines {
			pl := control.PeerLine{
				Peer: p.Index, Name: p.Name, Line: s, Label: p.LineLabels[s],
				Short:   strconv.Itoa(p.Index) + "*" + strconv.Itoa(s),
				Address: numplan.Phone(uint8(p.Index), uint8(s)),
			}
			if ph != "" {
				pl.URI = fmt.Sprintf("sip:%d@%s", s, ph)
				pl.Dial = ph + "." + strconv.Itoa(s)
			}
			out.Peers = append(out.Peers, pl)
		}
	}
	return out
}

// lineURIs are sip:<line>@<node> and, with a label that is a valid SIP
// user, sip:<label>@<node>.
func lineURIs(line int, label, host string) []string {
	if host == "" {
		return []string{}
	}
	uris := []string{fmt.Sprintf("sip:%d@%s", line, host)}
	if u := dialplan.HostName(label); u != "" && u == strings.ToLower(label) {
		uris = append(uris, "sip:"+u+"@"+host)
	}
	return uris
}
