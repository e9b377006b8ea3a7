package node

import (
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/dialplan"
)

func TestLinesFrom(t *testing.T) {
	cfg := &config.Config{
		Name:       "Bob's Pi",
		LineLabels: map[int]string{1: "kitchen", 3: "Front Door"},
		Peers: []config.Peer{
			{Index: 7, Name: "alice", Lines: []int{1, 2}, LineLabels: map[int]string{2: "hall"}},
			{Index: 9},
		},
	}
	ls := linesFrom(cfg, []int{1, 3})
	if ls.Node != "bob-s-pi" {
		t.Errorf("node host %q, want bob-s-pi", ls.Node)
	}
	if len(ls.Lines) != 2 || !slices.Equal(ls.Lines[0].URIs, []string{"sip:1@bob-s-pi", "sip:kitchen@bob-s-pi"}) || ls.Lines[0].Address.String() != "10.0.1.1" {
		t.Errorf("line 1: %+v", ls.Lines)
	}
	// A label that is no SIP user ("Front Door") gives no URI of its own.
	if !slices.Equal(ls.Lines[1].URIs, []string{"sip:3@bob-s-pi"}) {
		t.Errorf("line 3 URIs %v", ls.Lines[1].URIs)
	}
	type pl struct{ label, uri, short, dial, addr string }
	var got []pl
	for _, p := range ls.Peers {
		got = append(got, pl{p.Label, p.URI, p.Short, p.Dial, p.Address.String()})
	}
	want := []pl{
		{"", "sip:1@alice", "7*1", "alice.1", "10.7.1.1"},
		{"hall", "sip:2@alice", "7*2", "alice.2", "10.7.2.1"}, // alice's own label for its line 2
		{"", "", "9*1", "", "10.9.1.1"},                       // no name: its short number and address only
	}
	if !slices.Equal(got, want) {
		t.Errorf("peer lines %v, want %v", got, want)
	}

	// Every URI shown routes, through the dial plan, to the address shown
	// beside it.
	env := sipEnv(cfg, []int{1, 3})
	for _, p := range ls.Peers {
		byLabel := ""
		if p.Label != "" && p.Dial != "" {
			byLabel = dialplan.HostName(p.Name) + "." + p.Label
			user, host := p.Label, dialplan.HostName(p.Name)
			if d := (*dialplan.Plan)(nil).RouteURI(user, host, env); d.Kind != dialplan.Peer || d.Peer != p.Peer || d.Line != p.Line {
				t.Errorf("sip:%s@%s: %+v, want peer %d line %d", user, host, d, p.Peer, p.Line)
			}
		}
		for _, dialled := range []string{p.Short, p.Dial, byLabel} {
			if dialled == "" {
				continue
			}
			d := (*dialplan.Plan)(nil).Route(dialled, env)
			if d.Kind != dialplan.Peer || d.Peer != p.Peer || d.Line != p.Line {
				t.Errorf("dialling %q: %+v, want peer %d line %d", dialled, d, p.Peer, p.Line)
			}
		}
		if p.URI != "" {
			user, host := splitURI(p.URI)
			d := (*dialplan.Plan)(nil).RouteURI(user, host, env)
			if d.Kind != dialplan.Peer || d.Peer != p.Peer || d.Line != p.Line {
				t.Errorf("%s: %+v, want peer %d line %d", p.URI, d, p.Peer, p.Line)
			}
		}
	}
	for _, l := range ls.Lines {
		for _, u := range l.URIs {
			user, host := splitURI(u)
			d := (*dialplan.Plan)(nil).RouteURI(user, host, env)
			if d.Kind != dialplan.Local || d.Line != l.Line {
				t.Errorf("%s: %+v, want local line %d", u, d, l.Line)
			}
		}
	}
	if d := (*dialplan.Plan)(nil).Route("2", env); d.Kind != dialplan.Refuse {
		t.Errorf("line 2 is not served here, yet dialling 2: %+v", d)
	}
}

func splitURI(u string) (user, host string) {
	user, host, _ = strings.Cut(strings.TrimPrefix(u, "sip:"), "@")
	return user, host
}

// A reloaded config's dial plan applies to the next call.
func TestSIPPlanFollowsConfig(t *testing.T) {
	var s sipPart
	log := slog.New(slog.DiscardHandler)
	env := dialplan.Env{Lines: 2}
	c1 := &config.Config{SIP: config.SIP{DialPlan: []dialplan.Rule{{Match: "9", Target: "line:2"}}}}
	if d := s.planFor(c1, log).Route("9", env); d.Kind != dialplan.Local || d.Line != 2 {
		t.Fatalf("9 with the first config: %+v", d)
	}
	c2 := &config.Config{SIP: config.SIP{DialPlan: []dialplan.Rule{{Match: "9", Target: "refuse:603"}}}}
	if d := s.planFor(c2, log).Route("9", env); d.Kind != dialplan.Refuse || d.Code != 603 {
		t.Fatalf("9 after the reload: %+v", d)
	}
	first, again := s.planFor(c2, log), s.planFor(c2, log)
	if first != again {
		t.Error("the plan is compiled again for an unchanged config")
	}
}

// A peer's labels, as it announced them into the config, route: by name
// (bob.kitchen), by URI (sip:kitchen@bob) and alone when only one line
// anywhere has the label; our own label comes first.
func TestSIPEnvPeerLabels(t *testing.T) {
	cfg := &config.Config{
		Name:       "home",
		LineLabels: map[int]string{1: "office"},
		Peers: []config.Peer{
			{Index: 4, Name: "bob", Lines: []int{1, 2}, LineLabels: map[int]string{1: "kitchen", 2: "office"}},
			{Index: 5, Name: "carol", LineLabels: map[int]string{1: "kitchen"}},
		},
	}
	env := sipEnv(cfg, []int{1})
	for _, tc := range []struct {
		user, host string
		kind       dialplan.Kind
		peer, line int
	}{
		{"bob.kitchen", "", dialplan.Peer, 4, 1},
		{"bob.office", "10.0.1.2", dialplan.Peer, 4, 2},
		{"kitchen", "bob", dialplan.Peer, 4, 1},
		{"kitchen", "carol", dialplan.Peer, 5, 1},
		{"office", "", dialplan.Local, 0, 1},   // ours, not bob's
		{"kitchen", "", dialplan.Refuse, 0, 0}, // bob's and carol's: 485
	} {
		d := (*dialplan.Plan)(nil).RouteURI(tc.user, tc.host, env)
		if d.Kind != tc.kind || d.Peer != tc.peer || d.Line != tc.line {
			t.Errorf("sip:%s@%s: %+v, want %v peer %d line %d", tc.user, tc.host, d, tc.kind, tc.peer, tc.line)
		}
	}
	if d := (*dialplan.Plan)(nil).Route("kitchen", env); d.Code != 485 {
		t.Errorf("kitchen, labelled at bob and carol: %+v, want 485", d)
	}
}
