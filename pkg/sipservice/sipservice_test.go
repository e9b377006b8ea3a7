package sipservice

import (
	"io"
	"log/slog"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/peerline/peerline/pkg/dialplan"
)

func TestDecide(t *testing.T) {
	plan, err := dialplan.Compile([]dialplan.Rule{
		{Match: `0\d+`, Target: "trunk:provider"},
		{Match: `99`, Target: "refuse:603"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Routes: func() (*dialplan.Plan, dialplan.Env) {
		return plan, dialplan.Env{Node: "home", Lines: 2, Peers: []dialplan.PeerInfo{{Index: 7, Name: "alice"}}, Trunks: []string{"provider"}}
	}}
	for _, tc := range []struct {
		user    string
		code    int
		contact string
		host    string // default 10.0.1.2, the Pi's address on line 1
	}{
		{"2", 302, "<sip:2@10.7.2.1>", "alice"},
		{"1", 302, "<sip:1@10.0.1.1>", "home"},
		{"2", 404, "", "example.org"}, // never DNS
		{"2", 302, "<sip:2@10.0.2.1>", ""},
		{"7*2", 302, "<sip:2@10.7.2.1>", ""},
		{"alice", 302, "<sip:1@10.7.1.1>", ""},
		{"alice.2", 302, "<sip:2@10.7.2.1>", ""},
		{"3", 404, "", ""},
		{"99", 603, "", ""},
		{"0301234", 503, "", ""}, // trunks come later: refused clearly, not rung
		{"", 484, "", ""},
	} {
		if tc.host == "" {
			tc.host = "10.0.1.2"
		}
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: tc.user, Host: tc.host})
		req.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK1"))
		req.AppendHeader(sip.NewHeader("From", "<sip:1@10.0.1.2>;tag=a"))
		req.AppendHeader(sip.NewHeader("To", "<sip:"+tc.user+"@10.0.1.2>"))
		req.AppendHeader(sip.NewHeader("Call-ID", "c1"))
		req.AppendHeader(sip.NewHeader("CSeq", "1 INVITE"))
		res, d := s.decide(req)
		if res.StatusCode != tc.code {
			t.Errorf("%q: %d (%s), want %d", tc.user, res.StatusCode, d.Reason, tc.code)
			continue
		}
		got := ""
		if c := res.Contact(); c != nil {
			got = c.Value()
		}
		if got != tc.contact {
			t.Errorf("%q: Contact %q, want %q", tc.user, got, tc.contact)
		}
	}
}
