package dialplan

import (
	"strconv"
	"strings"
	"testing"
)

var env = Env{
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
		{"office", Decision{Kind: Refuse, Code: 485}}, // local line 2 and alice's line 2
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
		{Rule{Match: "1", Target: "line:0"}, "from 1 to 253"},
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
	f.Fuzz(func(t *testing.T, dial, match, tgt string) {
		p, err := Compile([]Rule{{Match: match, Rewrite: "$1", Target: tgt}})
		if err != nil {
			p = nil
		}
		d := p.Route(dial, env)
		switch d.Kind {
		case Refuse:
			if d.Code < 400 || d.Code > 699 {
				t.Fatalf("refusal with code %d", d.Code)
			}
		case Local:
			if d.Line < 1 || d.Line > env.Lines {
				t.Fatalf("local line %d of %d", d.Line, env.Lines)
			}
		case Peer:
			if _, ok := findPeer(env, strconv.Itoa(d.Peer)); !ok || d.Line < 1 || d.Line > 253 {
				t.Fatalf("peer decision %+v names no paired peer line", d)
			}
		case Trunk:
			if d.Trunk != "provider" {
				t.Fatalf("trunk %q is not configured", d.Trunk)
			}
		}
	})
}
