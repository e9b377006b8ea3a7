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
		{Match: `00(.+)`, Rewrite: "$1", Target: "trunk:down"},
		{Match: `0(\d+)`, Rewrite: "$1", Target: "trunk:provider"},
		{Match: `99`, Target: "refuse:603"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Routes: func() (*dialplan.Plan, dialplan.Env) {
		return plan, dialplan.Env{Node: "home", LineSet: []int{1, 2, 254}, Peers: []dialplan.PeerInfo{{Index: 7, Name: "alice"}}, Trunks: []string{"provider", "down"}}
	}}
	s.Withhold = func() string { return "*31*" }
	s.Trunk = func(name, number string, withhold bool) (sip.Uri, string, bool) {
		if name != "provider" {
			return sip.Uri{}, "waiting for the uplink", false
		}
		// As trunk.CallURI does, with prefix "0" and withhold prefix *31*.
		u := "0" + number
		if withhold {
			u = "*31*" + u
		}
		return sip.Uri{Scheme: "sip", User: u, Host: "10.0.1.2", Port: 5062}, "", true
	}
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
		{"254", 302, "<sip:254@10.0.254.1>", ""}, // numplan.MaxLine
		{"7*254", 302, "<sip:254@10.7.254.1>", ""},
		{"255", 404, "", ""},
		{"99", 603, "", ""},
		{"0301234", 302, "<sip:0301234@10.0.1.2:5062>", ""},
		{"*31*0301234", 302, "<sip:*31*0301234@10.0.1.2:5062>", ""}, // withheld: the trunk is told
		{"*31*2", 302, "<sip:2@10.0.2.1>", ""},                      // a local call: the prefix is dropped
		{"*31*", 404, "", ""},                                       // the prefix alone is not stripped
		{"00301234", 503, "", ""},                                   // trunk "down" is not running
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
