package privacy

import (
	"strings"
	"testing"
)

var classifyTests = []struct {
	name string
	h    Headers
	want Why
}{
	{"ordinary", Headers{From: `"Alice" <sip:alice@example.com>;tag=1`}, NotAnonymous},
	{"rfc3323 from", Headers{From: `"Anonymous" <sip:anonymous@anonymous.invalid>;tag=x`}, AnonymousURI},
	{"privacy id", Headers{From: `<sip:+4930123@provider.example>;tag=2`, Privacy: "id"}, PrivacyHeader},
	{"privacy id;critical", Headers{From: `<sip:bob@b>`, Privacy: "id;critical"}, PrivacyHeader},
	{"privacy user", Headers{From: `<sip:bob@b>`, Privacy: " user "}, PrivacyHeader},
	{"privacy header", Headers{From: `<sip:bob@b>`, Privacy: "header;session"}, PrivacyHeader},
	{"privacy joined lines", Headers{From: `<sip:bob@b>`, Privacy: "none, ID"}, PrivacyHeader},
	{"privacy none", Headers{From: `<sip:bob@b>`, Privacy: "none"}, NotAnonymous},
	{"privacy session", Headers{From: `<sip:bob@b>`, Privacy: "session"}, NotAnonymous},
	{"privacy id-like", Headers{From: `<sip:bob@b>`, Privacy: "idx"}, NotAnonymous},
	{"user anonymous other host", Headers{From: `<sip:Anonymous@pbx.example>`}, AnonymousURI},
	{"host anonymous.invalid", Headers{From: `sip:unknown@anonymous.invalid;tag=3`}, AnonymousURI},
	{"host with port", Headers{From: `<sip:x@ANONYMOUS.INVALID:5060;transport=udp>`}, AnonymousURI},
	{"display only", Headers{From: `Anonymous <sip:4711@pbx.example>;tag=4`}, AnonymousDisplay},
	{"display quoted", Headers{From: `"anonymous" <sip:4711@pbx.example>`}, AnonymousDisplay},
	{"display contains anonymous", Headers{From: `"Anonymous Coward" <sip:4711@pbx.example>`}, NotAnonymous},
	{"user anonymous in display of other", Headers{From: `"anonymous@anonymous.invalid" <sip:eve@evil>`}, NotAnonymous},
	{"quoted < in display", Headers{From: `"a<b" <sip:anonymous@x>`}, AnonymousURI},
	{"tel uri", Headers{From: `<tel:anonymous>`}, AnonymousURI},
	{"tel number", Headers{From: `<tel:+4930123;phone-context=x>`}, NotAnonymous},
	{"user password", Headers{From: `<sip:anonymous:pw@h>`}, AnonymousURI},
	{"empty", Headers{}, NotAnonymous},
	{"garbage", Headers{From: `<<<"\`, Privacy: ";;,,"}, NotAnonymous},
	{"unclosed bracket", Headers{From: `"Anonymous" <sip:anonymous@anonymous.invalid`}, AnonymousDisplay},
	{"unknown scheme", Headers{From: `<http://anonymous@anonymous.invalid/>`}, NotAnonymous},
	{"over the bound", Headers{From: `<sip:bob@b>`, Privacy: strings.Repeat(" ", MaxHeader) + "id"}, NotAnonymous},
}

func TestClassify(t *testing.T) {
	for _, tt := range classifyTests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.h); got != tt.want {
				t.Errorf("Classify(%+v) = %v, want %v", tt.h, got, tt.want)
			}
		})
	}
}

func TestParseNameAddr(t *testing.T) {
	for _, tt := range []struct{ in, display, uri string }{
		{`"Alice" <sip:alice@a>;tag=1`, "Alice", "sip:alice@a"},
		{`Bob <sip:bob@b;transport=udp>`, "Bob", "sip:bob@b;transport=udp"},
		{`sip:carol@c;tag=9`, "", "sip:carol@c"},
		{`"say \"hi\"" <sip:d@d>`, `say "hi"`, "sip:d@d"},
		{`<sip:e@e>`, "", "sip:e@e"},
		{`"x <`, "", `"x <`}, // the < is quoted: no name-addr
	} {
		d, u := ParseNameAddr(tt.in)
		if d != tt.display || u != tt.uri {
			t.Errorf("ParseNameAddr(%q) = %q, %q, want %q, %q", tt.in, d, u, tt.display, tt.uri)
		}
	}
}

func TestDecide(t *testing.T) {
	anon := Headers{From: AnonymousFrom + ";tag=1"}
	known := Headers{From: `"Alice" <sip:alice@a>`}
	pol := Policy{
		Default: Rule{Action: Refuse},
		Peers:   map[string]Rule{"mum": {Action: Accept}},
		Trunks:  map[string]Rule{"sipgate": {Action: Redirect, Line: 2}},
	}
	for _, tt := range []struct {
		name   string
		pol    Policy
		src    Source
		h      Headers
		action Action
		line   int
		code   int
	}{
		{"identified always accepted", pol, Source{FromTrunk, "other"}, known, Accept, 0, 0},
		{"default refuses", pol, Source{FromPeer, "stranger"}, anon, Refuse, 0, 433},
		{"peer override", pol, Source{FromPeer, "mum"}, anon, Accept, 0, 0},
		{"trunk override", pol, Source{FromTrunk, "sipgate"}, anon, Redirect, 2, 0},
		{"peer name is not a trunk name", pol, Source{FromTrunk, "mum"}, anon, Refuse, 0, 433},
		{"zero policy accepts", Policy{}, Source{FromTrunk, "x"}, anon, Accept, 0, 0},
		{"privacy id refused", pol, Source{FromTrunk, "x"}, Headers{From: "<sip:1@p>", Privacy: "id"}, Refuse, 0, 433},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.pol.Decide(tt.src, tt.h)
			if d.Action != tt.action || d.Line != tt.line || d.Code != tt.code {
				t.Errorf("Decide(%+v, %+v) = %+v, want action %s line %d code %d", tt.src, tt.h, d, tt.action, tt.line, tt.code)
			}
			if d.Reason == "" {
				t.Errorf("Decide(%+v) has no reason", tt.src)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		pol  Policy
		want string // substring of the error; "" for none
	}{
		{"zero", Policy{}, ""},
		{"good", Policy{Default: Rule{Action: Refuse}, Peers: map[string]Rule{"a": {Action: Redirect, Line: 2}}}, ""},
		{"unknown action", Policy{Default: Rule{Action: "drop"}}, `action "drop": want accept, refuse or redirect`},
		{"redirect without line", Policy{Trunks: map[string]Rule{"t": {Action: Redirect}}}, `trunk "t": action "redirect" needs a line`},
		{"redirect to missing line", Policy{Peers: map[string]Rule{"p": {Action: Redirect, Line: 5}}}, "line 5 is not one of this node's lines [1 2]"},
		{"line on refuse", Policy{Default: Rule{Action: Refuse, Line: 1}}, `line 1 is only for action "redirect"`},
		{"empty peer rule", Policy{Peers: map[string]Rule{"p": {}}}, `peer "p": action ""`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.pol.Validate([]int{1, 2})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// The last line numplan allows can be rung like any other: the redirect
// once stopped at 253 while phones register on 254.
func TestRedirectToLastLine(t *testing.T) {
	pol := Policy{Peers: map[string]Rule{"p": {Action: Redirect, Line: 254}}}
	if err := pol.Validate([]int{1, 254}); err != nil {
		t.Errorf("Validate = %v, want nil", err)
	}
	pol.Peers["p"] = Rule{Action: Redirect, Line: 255}
	if err := pol.Validate([]int{1, 254}); err == nil || !strings.Contains(err.Error(), "needs a line 1..254") {
		t.Errorf("Validate = %v, want the line range named", err)
	}
}

func TestWithhold(t *testing.T) {
	w := Withhold{Prefix: "*31*", Lines: []int{3}}
	for _, tt := range []struct {
		line     int
		dialled  string
		number   string
		withhold bool
	}{
		{1, "*31*0301234", "0301234", true},
		{1, "0301234", "0301234", false},
		{3, "0301234", "0301234", true},
		{3, "*31*0301234", "0301234", true},
		{1, "*31*", "*31*", false}, // the prefix alone is not a number
		{1, "*3", "*3", false},
	} {
		n, wh := w.Apply(tt.line, tt.dialled)
		if n != tt.number || wh != tt.withhold {
			t.Errorf("Apply(%d, %q) = %q, %v, want %q, %v", tt.line, tt.dialled, n, wh, tt.number, tt.withhold)
		}
	}
	if err := w.Validate([]int{1, 2, 3}); err != nil {
		t.Errorf("Validate(1 2 3) = %v", err)
	}
	if err := w.Validate([]int{1, 2}); err == nil || !strings.Contains(err.Error(), "line 3 is not one of this node's lines") {
		t.Errorf("Validate(1 2) = %v, want line 3 is not one of this node's lines", err)
	}
	if err := (Withhold{Prefix: "*31a"}).Validate([]int{1, 2, 3}); err == nil {
		t.Error(`Validate(prefix "*31a") = nil, want an error`)
	}
}

func TestOutgoingHeaders(t *testing.T) {
	id := Identity{Display: `Smith "home"`, URI: "sip:4930123@provider.example"}
	got := OutgoingHeaders(id, false)
	if want := (Outgoing{From: `"Smith \"home\"" <sip:4930123@provider.example>`}); got != want {
		t.Errorf("OutgoingHeaders(withhold=false) = %+v, want %+v", got, want)
	}
	got = OutgoingHeaders(id, true)
	want := Outgoing{From: AnonymousFrom, PPreferredIdentity: `"Smith \"home\"" <sip:4930123@provider.example>`, Privacy: "id"}
	if got != want {
		t.Errorf("OutgoingHeaders(withhold=true) = %+v, want %+v", got, want)
	}
	// What we send as withheld, we classify as anonymous.
	if why := Classify(Headers{From: got.From + ";tag=1", Privacy: got.Privacy}); why == NotAnonymous {
		t.Errorf("our own withheld call classifies as %v", why)
	}
	// A display name with a line break cannot split the header.
	if f := OutgoingHeaders(Identity{Display: "a\r\nVia: x", URI: "sip:a@b"}, false).From; strings.ContainsAny(f, "\r\n") {
		t.Errorf("From %q contains a line break", f)
	}
}

// FuzzClassify checks the parser on hostile header values: it never
// panics, an anonymous verdict by URI or display is backed by the input,
// and a From we build from the parsed display name and URI classifies the
// same way as the input it came from.
func FuzzClassify(f *testing.F) {
	for _, tt := range classifyTests {
		f.Add(tt.h.From, tt.h.Privacy)
	}
	f.Fuzz(func(t *testing.T, from, priv string) {
		why := Classify(Headers{From: from, Privacy: priv})
		low := strings.ToLower(from)
		switch why {
		case AnonymousURI, AnonymousDisplay:
			if !strings.Contains(low, "anonymous") {
				t.Fatalf("Classify(From %q) = %v without 'anonymous' in it", from, why)
			}
		case PrivacyHeader:
			lp := strings.ToLower(priv)
			if !strings.Contains(lp, "id") && !strings.Contains(lp, "user") && !strings.Contains(lp, "header") {
				t.Fatalf("Classify(Privacy %q) = %v", priv, why)
			}
		}
		display, uri := ParseNameAddr(bound(from))
		if strings.ContainsAny(uri, "<>") && !strings.Contains(from, "<<") {
			// A URI never keeps its own brackets.
			if strings.HasPrefix(uri, "<") {
				t.Fatalf("ParseNameAddr(%q) uri %q keeps a bracket", from, uri)
			}
		}
		if why == PrivacyHeader || strings.ContainsAny(uri, "<>\"") || strings.ContainsAny(display, "\r\n") {
			return
		}
		rebuilt := OutgoingHeaders(Identity{Display: display, URI: uri}, false).From
		if got := Classify(Headers{From: rebuilt}); got != why {
			t.Fatalf("From %q classifies %v, rebuilt as %q it classifies %v", from, why, rebuilt, got)
		}
	})
}
