package dialplan

import (
	"strconv"
	"strings"
	"testing"

	"github.com/peerline/peerline/pkg/numplan"
)

var env = Env{
	Node:   "home",
	Lines:  2,
	Labels: map[int]string{1: "kitchen", 2: "office"},
	Peers: []PeerInfo{
		{Index: 7, Name: "alice", Labels: map[int]string{1: "hall", 2: "office"}},
		{Index: 12, Name: "Mum", Labels: map[int]string{1: "mum"}},
	},
	Trunks: []string{"provider"},
}

func TestRoute(t *testing.T) {
	plan, err := Compile([]Rule{
		{Match: `00(\d+)`, Rewrite: `+$1`, Target: "trunk:provider"},
		{Match: `0(\d+)`, Target: "trunk:provider"},
		{Match: `9`, Target: "peer:alice.2"},
		{Match: `8`, Target: "peer:12"},
		{Match: `900\d*`, Target: "refuse:403"},
		{Match: `555`, Target: "trunk:nosuch"},
		{Match: `66`, Target: "peer:bob"},
		{Match: `44`, Target: "line:2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dial string
		want Decision
	}{
		{"1", Decision{Kind: Local, Line: 1}},
		{"2", Decision{Kind: Local, Line: 2}},
		{"3", Decision{Kind: Refuse, Code: 404}},
		{"7*2", Decision{Kind: Peer, Peer: 7, Line: 2}},
		{"7*", Decision{Kind: Peer, Peer: 7, Line: 1}},
		{"12*1", Decision{Kind: Peer, Peer: 12, Line: 1}},
		{"13*1", Decision{Kind: Refuse, Code: 404}},
		{"7*2*1", Decision{Kind: Refuse, Code: 404}},
		{"07*1", Decision{Kind: Refuse, Code: 404}}, // no rule matches, and no short number starts with 0
		{"alice", Decision{Kind: Peer, Peer: 7, Line: 1}},
		{"Alice.2", Decision{Kind: Peer, Peer: 7, Line: 2}},
		{"mum", Decision{Kind: Peer, Peer: 12, Line: 1}}, // peer name before the label
		{"hall", Decision{Kind: Peer, Peer: 7, Line: 1}},
		{"kitchen", Decision{Kind: Local, Line: 1}},
		{"office", Decision{Kind: Local, Line: 2}}, // ours before alice's line 2
		{"0049301234", Decision{Kind: Trunk, Trunk: "provider", Number: "+49301234"}},
		{"0301234", Decision{Kind: Trunk, Trunk: "provider", Number: "0301234"}},
		{"9", Decision{Kind: Peer, Peer: 7, Line: 2}},
		{"8", Decision{Kind: Peer, Peer: 12, Line: 1}},
		{"900123", Decision{Kind: Refuse, Code: 403}},
		{"555", Decision{Kind: Refuse, Code: 503}},
		{"66", Decision{Kind: Refuse, Code: 404}},
		{"44", Decision{Kind: Local, Line: 2}},
		{"", Decision{Kind: Refuse, Code: 484}},
		{strings.Repeat("1", MaxDialled+1), Decision{Kind: Refuse, Code: 484}},
		{"bob", Decision{Kind: Refuse, Code: 404}},
		{"10.7.2.1", Decision{Kind: Refuse, Code: 404}},
	} {
		got := plan.Route(tc.dial, env)
		if got.Reason == "" {
			t.Errorf("%q: no reason given: %+v", tc.dial, got)
		}
		got.Reason = ""
		if got != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.dial, got, tc.want)
		}
	}
}

func TestRouteURI(t *testing.T) {
	plan, err := Compile([]Rule{{Match: `9`, Target: "peer:alice.2"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, host string
		want       Decision
	}{
		{"2", "alice", Decision{Kind: Peer, Peer: 7, Line: 2}},
		{"2", "ALICE", Decision{Kind: Peer, Peer: 7, Line: 2}},
		{"hall", "alice", Decision{Kind: Peer, Peer: 7, Line: 1}},
		{"office", "alice", Decision{Kind: Peer, Peer: 7, Line: 2}}, // unique at alice
		{"kitchen", "alice", Decision{Kind: Refuse, Code: 404}},     // a label of ours, not alice's
		{"", "mum", Decision{Kind: Peer, Peer: 12, Line: 1}},
		{"1", "Mum", Decision{Kind: Peer, Peer: 12, Line: 1}},
		{"300", "alice", Decision{Kind: Refuse, Code: 404}},
		{"2", "bob", Decision{Kind: Refuse, Code: 404}},
		{"2", "7", Decision{Kind: Refuse, Code: 404}}, // an index is no node name
		{"2", "example.org", Decision{Kind: Refuse, Code: 404}},
		// This node, by name or address: dialled digits, names and rules.
		{"kitchen", "home", Decision{Kind: Local, Line: 1}},
		{"2", "Home", Decision{Kind: Local, Line: 2}},
		{"7*2", "10.0.1.2", Decision{Kind: Peer, Peer: 7, Line: 2}},
		{"9", "10.0.1.2", Decision{Kind: Peer, Peer: 7, Line: 2}},
		{"alice.2", "", Decision{Kind: Peer, Peer: 7, Line: 2}},
		{"alice", "[::1]", Decision{Kind: Peer, Peer: 7, Line: 1}},
		{"2", strings.Repeat("a", MaxDialled+1), Decision{Kind: Refuse, Code: 484}},
	} {
		got := plan.RouteURI(tc.user, tc.host, env)
		if got.Reason == "" {
			t.Errorf("sip:%s@%s: no reason given: %+v", tc.user, tc.host, got)
		}
		got.Reason = ""
		if got != tc.want {
			t.Errorf("sip:%s@%s: got %+v, want %+v", tc.user, tc.host, got, tc.want)
		}
	}
}

func TestLineSet(t *testing.T) {
	e := Env{LineSet: []int{1, 3}}
	for dial, want := range map[string]Kind{"1": Local, "2": Refuse, "3": Local, "4": Refuse} {
		if d := (*Plan)(nil).Route(dial, e); d.Kind != want {
			t.Errorf("%q with lines 1 and 3: %v (%s), want %v", dial, d.Kind, d.Reason, want)
		}
	}
}

// Peers' labels, as they announced them, and the ambiguities: our own
// labels before peers' names, peers' names before their labels, numbers
// before labels, and one label on two lines at one level refused with 485.
func TestPeerLabels(t *testing.T) {
	e := Env{
		Node: "home", LineSet: []int{1, 2}, Labels: map[int]string{1: "kitchen", 2: "office", 3: "porch"},
		Peers: []PeerInfo{
			{Index: 4, Name: "bob", Labels: map[int]string{1: "kitchen", 2: "hall", 3: "garage", 4: "garage", 5: "7", 6: "mum"}},
			{Index: 12, Name: "Mum", Labels: map[int]string{1: "hall"}},
			{Index: 7, Name: "Alice's Pi", Labels: map[int]string{1: "porch", 2: "front.door", 3: "door"}},
		},
	}
	for _, tc := range []struct {
		user, host string
		want       Decision
	}{
		{"bob.kitchen", "", Decision{Kind: Peer, Peer: 4, Line: 1}},
		{"BOB.Kitchen", "", Decision{Kind: Peer, Peer: 4, Line: 1}},
		{"kitchen", "", Decision{Kind: Local, Line: 1}}, // ours, though bob has one too
		{"bob.hall", "", Decision{Kind: Peer, Peer: 4, Line: 2}},
		{"mum.hall", "", Decision{Kind: Peer, Peer: 12, Line: 1}},
		{"hall", "", Decision{Kind: Refuse, Code: 485}},       // bob's and mum's
		{"garage", "", Decision{Kind: Refuse, Code: 485}},     // two of bob's lines
		{"bob.garage", "", Decision{Kind: Refuse, Code: 485}}, // the same, by name
		{"bob.7", "", Decision{Kind: Peer, Peer: 4, Line: 7}}, // a number, not line 5's label "7"
		{"bob.300", "", Decision{Kind: Refuse, Code: 404}},
		{"bob.nothing", "", Decision{Kind: Refuse, Code: 404}},
		{"bob.", "", Decision{Kind: Refuse, Code: 404}},
		{"mum", "", Decision{Kind: Peer, Peer: 12, Line: 1}}, // a peer's name before bob's label
		{"porch", "", Decision{Kind: Refuse, Code: 404}},     // our line 3's label, and line 3 is not up
		{"Alice's Pi.porch", "", Decision{Kind: Peer, Peer: 7, Line: 1}},
		{"door", "", Decision{Kind: Peer, Peer: 7, Line: 3}}, // one line of all peers has it
		{"alice-s-pi.porch", "", Decision{Kind: Peer, Peer: 7, Line: 1}},
		{"Alice's Pi.front.door", "", Decision{Kind: Peer, Peer: 7, Line: 2}}, // a dot in the label
		{"alice-s-pi.2", "", Decision{Kind: Peer, Peer: 7, Line: 2}},          // the phonebook's form
		{"kitchen", "bob", Decision{Kind: Peer, Peer: 4, Line: 1}},
		{"KITCHEN", "bob", Decision{Kind: Peer, Peer: 4, Line: 1}},
		{"garage", "bob", Decision{Kind: Refuse, Code: 485}},
		{"7", "bob", Decision{Kind: Peer, Peer: 4, Line: 7}},
		{"hall", "mum", Decision{Kind: Peer, Peer: 12, Line: 1}},
		{"front.door", "alice-s-pi", Decision{Kind: Peer, Peer: 7, Line: 2}},
		{"porch", "bob", Decision{Kind: Refuse, Code: 404}}, // alice's label, not bob's
		{"kitchen", "home", Decision{Kind: Local, Line: 1}},
	} {
		got := (*Plan)(nil).RouteURI(tc.user, tc.host, e)
		if got.Reason == "" {
			t.Errorf("sip:%s@%s: no reason", tc.user, tc.host)
		}
		if got.Code == 485 && !strings.Contains(got.Reason, "number") {
			t.Errorf("sip:%s@%s: 485 without saying to dial a number: %q", tc.user, tc.host, got.Reason)
		}
		got.Reason = ""
		if got != tc.want {
			t.Errorf("sip:%s@%s: %+v, want %+v", tc.user, tc.host, got, tc.want)
		}
	}
}

// Line 254 is a line (numplan.MaxLine): it registers, so it must be
// dialled too, by number, short number, URI and rule. 255 is none.
func TestLine254(t *testing.T) {
	e := Env{Node: "home", LineSet: []int{1, 254}, Peers: []PeerInfo{{Index: 7, Name: "alice"}}}
	plan, err := Compile([]Rule{{Match: "9", Target: "line:254"}, {Match: "8", Target: "peer:alice.254"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, host string
		want       Decision
	}{
		{"254", "", Decision{Kind: Local, Line: 254}},
		{"254", "home", Decision{Kind: Local, Line: 254}},
		{"9", "", Decision{Kind: Local, Line: 254}},
		{"7*254", "", Decision{Kind: Peer, Peer: 7, Line: 254}},
		{"alice.254", "", Decision{Kind: Peer, Peer: 7, Line: 254}},
		{"8", "", Decision{Kind: Peer, Peer: 7, Line: 254}},
		{"254", "alice", Decision{Kind: Peer, Peer: 7, Line: 254}},
		{"255", "", Decision{Kind: Refuse, Code: 404}},
		{"7*255", "", Decision{Kind: Refuse, Code: 404}},
		{"255", "alice", Decision{Kind: Refuse, Code: 404}},
		{"254*1", "", Decision{Kind: Refuse, Code: 404}}, // no node is 254: it is the wire's
	} {
		got := plan.RouteURI(tc.user, tc.host, e)
		got.Reason = ""
		if got != tc.want {
			t.Errorf("sip:%s@%s: %+v, want %+v", tc.user, tc.host, got, tc.want)
		}
	}
	for _, tgt := range []string{"line:255", "peer:alice.255", "line:0"} {
		if _, err := Compile([]Rule{{Match: "1", Target: tgt}}); err == nil || !strings.Contains(err.Error(), "from 1 to 254") {
			t.Errorf("target %s: %v, want an error naming 1 to 254", tgt, err)
		}
	}
}

func TestHostName(t *testing.T) {
	for in, want := range map[string]string{"alice": "alice", "Alice's Pi": "alice-s-pi", "  Mum ": "mum", "Zoë": "zo", "": "", "--": ""} {
		if got := HostName(in); got != want {
			t.Errorf("HostName(%q) = %q, want %q", in, got, want)
		}
	}
	e := Env{Node: "Bob's Pi", Lines: 1, Peers: []PeerInfo{{Index: 3, Name: "Alice's Pi"}}}
	if d := (*Plan)(nil).RouteURI("1", "alice-s-pi", e); d.Kind != Peer || d.Peer != 3 {
		t.Errorf("sip:1@alice-s-pi: %+v", d)
	}
	if d := (*Plan)(nil).RouteURI("1", "bob-s-pi", e); d.Kind != Local {
		t.Errorf("sip:1@bob-s-pi: %+v", d)
	}
}

// Without rules, the short numbers and names still work: a node with no
// dial plan configured is usable at once.
func TestRouteNoRules(t *testing.T) {
	var p *Plan
	if d := p.Route("7*2", env); d.Kind != Peer || d.Peer != 7 || d.Line != 2 {
		t.Errorf("nil plan: %+v", d)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		rule Rule
		want string
	}{
		{Rule{Match: "(", Target: "line:1"}, "not a regular expression"},
		{Rule{Match: "1", Target: "lines:1"}, `target must be "line:<n>"`},
		{Rule{Match: "1", Target: "line:0"}, "from 1 to 254"},
		{Rule{Match: "1", Target: "line:"}, "target must be"},
		{Rule{Match: "1", Target: "peer:alice.x"}, "line after the dot"},
		{Rule{Match: "1", Target: "peer:.2"}, "target must be"},
		{Rule{Match: "1", Target: "refuse:200"}, "from 400 to 699"},
		{Rule{Match: "1", Target: ""}, "target must be"},
	} {
		_, err := Compile([]Rule{{Match: "x", Target: "line:1"}, tc.rule})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "rule 2") {
			t.Errorf("%+v: %v, want an error naming rule 2 and %q", tc.rule, err, tc.want)
		}
	}
}

// A rule's expression must match the whole dialled string: "1" must not
// catch "12".
func TestRulesAnchored(t *testing.T) {
	p, err := Compile([]Rule{{Match: "1|2", Target: "refuse:403"}})
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Route("12", env); d.Kind == Refuse && d.Code == 403 {
		t.Errorf("12 matched the rule for 1|2: %+v", d)
	}
}

// Whatever is dialled, by a phone or in a peer's request, Route decides
// without panicking, and every decision is one a caller can carry out.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{"1", "7*2", "alice.2", "office", "0049301234", "9*", "**", "alice.", ".2", "1.1"} {
		f.Add(s, `0(\d+)`, "trunk:provider")
	}
	for _, s := range []string{"2@alice", "hall@alice", "@mum", "1@home", "7*2@10.0.1.2", "1@[::1]", "1@7", "alice.hall", "alice.office@10.0.1.2", "254@alice", "7*254"} {
		f.Add(s, `9`, "peer:alice.2")
	}
	f.Fuzz(func(t *testing.T, dial, match, tgt string) {
		p, err := Compile([]Rule{{Match: match, Rewrite: "$1", Target: tgt}})
		if err != nil {
			p = nil
		}
		// The dialled string doubles as a URI: user@host.
		user, host, _ := strings.Cut(dial, "@")
		for _, d := range []Decision{p.Route(dial, env), p.RouteURI(user, host, env)} {
			check(t, d)
		}
	})
}

func check(t *testing.T, d Decision) {
	t.Helper()
	{
		switch d.Kind {
		case Refuse:
			if d.Code < 400 || d.Code > 699 {
				t.Fatalf("refusal with code %d", d.Code)
			}
		case Local:
			if !env.hasLine(d.Line) {
				t.Fatalf("local line %d of %d", d.Line, env.Lines)
			}
		case Peer:
			if _, ok := findPeer(env, strconv.Itoa(d.Peer)); !ok || !numplan.ValidLine(d.Line) {
				t.Fatalf("peer decision %+v names no paired peer line", d)
			}
		case Trunk:
			if d.Trunk != "provider" {
				t.Fatalf("trunk %q is not configured", d.Trunk)
			}
		}
	}
}
