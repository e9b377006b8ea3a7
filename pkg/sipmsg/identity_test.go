package sipmsg

import (
	"strings"
	"testing"
)

func ours(a [4]byte) bool { return a[0] == 10 && a[1] == 0 }

// msg builds a message at Alice's node from a start line and header lines:
// her phones are 10.0.s.1, Bob's (the peer, node 7) 10.7.s.1.
func msg(start string, headers ...string) []byte {
	return []byte(start + "\r\n" + strings.Join(headers, "\r\n") + "\r\nContent-Length: 0\r\n\r\n")
}

// A request from Bob's phone to Alice's line 1, and his answer to a call
// from Alice's line 1, as they reach her phone after mapping.
var (
	peerInvite = []string{
		"Via: SIP/2.0/UDP 10.7.2.1:5060;branch=z9hG4bK-1",
		`From: "Bob" <sip:bob@10.7.2.1>;tag=b1`,
		"To: <sip:alice@10.0.1.1>",
		"Call-ID: c1@10.0.2.1",
		"CSeq: 1 INVITE",
		"Contact: <sip:bob@10.7.2.1:5060>",
	}
	peerOK = []string{
		"Via: SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK-1;received=10.0.1.1",
		`From: "Alice" <sip:alice@10.0.1.1>;tag=a1`,
		"To: <sip:bob@10.7.2.1>;tag=b1",
		"Call-ID: c1@10.0.1.1",
		"CSeq: 1 INVITE",
		"Contact: <sip:bob@10.7.2.1:5060>",
	}
)

// with returns headers with the field named like h's replaced by h, or h
// added.
func with(headers []string, h ...string) []string {
	out := append([]string(nil), headers...)
	for _, x := range h {
		name, _, _ := strings.Cut(x, ":")
		found := false
		for k := range out {
			if n, _, _ := strings.Cut(out[k], ":"); n == name {
				out[k], found = x, true
			}
		}
		if !found {
			out = append(out, x)
		}
	}
	return out
}

// TestImpersonation is the rule of the package doc's "Who may be named",
// field by field: where an address of ours (10.0.s.p) in a message from the
// peer is a disguise, and where it is the call working as it should.
func TestImpersonation(t *testing.T) {
	const invite = "INVITE sip:alice@10.0.1.1 SIP/2.0"
	tests := []struct {
		name string
		msg  []byte
		want string // the field found, "" for none
	}{
		// Requests from the peer.
		{"plain INVITE", msg(invite, peerInvite...), ""},
		{"From our line 2 (issue 13)", msg(invite, with(peerInvite, `From: "Mum (line 2)" <sip:10.0.2.1>;tag=x`)...), "from"},
		{"compact From", msg(invite, with(peerInvite, `f: <sip:10.0.2.1>;tag=x`)...), "from"},
		{"folded From", msg(invite, with(peerInvite, "From: \"Mum\"\r\n <sip:mum@10.0.2.1>;tag=x")...), "from"},
		{"our address in From's display name only", msg(invite, with(peerInvite, `From: "10.0.2.1" <sip:bob@10.7.2.1>;tag=x`)...), "from"},
		{"Contact at our line 2", msg(invite, with(peerInvite, "Contact: <sip:bob@10.0.2.1>")...), "contact"},
		{"compact Contact", msg(invite, with(peerInvite, "m: <sip:bob@10.0.2.1>")...), "contact"},
		{"Contact with maddr of ours", msg(invite, with(peerInvite, "Contact: <sip:bob@10.7.2.1;maddr=10.0.0.2>")...), "contact"},
		{"Via naming our line 2", msg(invite, with(peerInvite, "Via: SIP/2.0/UDP 10.0.2.1:5060;branch=z9hG4bK-1")...), "via"},
		{"second Via naming ours", msg(invite, append(peerInvite, "v: SIP/2.0/UDP 10.0.2.1;branch=z9hG4bK-2")...), "via"},
		{"P-Asserted-Identity", msg(invite, append(peerInvite, "P-Asserted-Identity: <sip:10.0.2.1>")...), "p-asserted-identity"},
		{"P-Preferred-Identity", msg(invite, append(peerInvite, "P-Preferred-Identity: <sip:10.0.2.1>")...), "p-preferred-identity"},
		{"Remote-Party-ID", msg(invite, append(peerInvite, `Remote-Party-ID: "Mum" <sip:10.0.2.1>;party=calling`)...), "remote-party-id"},
		{"Reply-To", msg(invite, append(peerInvite, "Reply-To: <sip:10.0.2.1>")...), "reply-to"},
		{"Record-Route", msg(invite, append(peerInvite, "Record-Route: <sip:10.0.0.2;lr>")...), "record-route"},
		{"Path", msg(invite, append(peerInvite, "Path: <sip:10.0.0.2;lr>")...), "path"},
		{"name case does not matter", msg(invite, with(peerInvite, `FROM: <sip:10.0.2.1>;tag=x`)...), "from"},
		// Legitimate in a request: whom it is for, and who on our side
		// sent it here.
		{"To another of our lines after a redirect", msg("INVITE sip:10.0.2.1 SIP/2.0", with(peerInvite, "To: <sip:10.0.1.1>")...), ""},
		{"Route", msg(invite, append(peerInvite, "Route: <sip:10.0.1.1;lr>")...), ""},
		{"REFER to our line 2", msg("REFER sip:alice@10.0.1.1 SIP/2.0", append(peerInvite, "Refer-To: <sip:10.0.2.1>")...), ""},
		{"Referred-By our line 1", msg("INVITE sip:10.0.2.1 SIP/2.0", append(peerInvite, "Referred-By: <sip:10.0.1.1>")...), ""},
		{"Diversion from our line 1", msg("INVITE sip:10.0.2.1 SIP/2.0", append(peerInvite, "Diversion: <sip:10.0.1.1>;reason=unconditional")...), ""},
		{"History-Info", msg("INVITE sip:10.0.2.1 SIP/2.0", append(peerInvite, "History-Info: <sip:10.0.1.1>;index=1")...), ""},
		{"P-Called-Party-ID", msg(invite, append(peerInvite, "P-Called-Party-ID: <sip:10.0.1.1>")...), ""},
		{"Call-ID with our address", msg(invite, with(peerInvite, "Call-ID: x@10.0.2.1")...), ""},
		{"User-Agent and Subject", msg(invite, append(peerInvite, "Subject: 10.0.2.1", "User-Agent: x 10.0.2.1")...), ""},
		{"hold address", msg(invite, with(peerInvite, "Contact: <sip:bob@0.0.0.0>")...), ""},
		{"a third node", msg(invite, with(peerInvite, "Contact: <sip:bob@10.5.2.1>")...), ""},
		{"a longer run", msg(invite, with(peerInvite, "Contact: <sip:bob@110.0.2.1>")...), ""},
		// Responses from the peer, to a request of our line 1.
		{"200 OK", msg("SIP/2.0 200 OK", peerOK...), ""},
		{"200 OK with Contact at our line 2", msg("SIP/2.0 200 OK", with(peerOK, "Contact: <sip:bob@10.0.2.1>")...), "contact"},
		{"180 with P-Asserted-Identity of ours", msg("SIP/2.0 180 Ringing", append(peerOK, "P-Asserted-Identity: <sip:10.0.2.1>")...), "p-asserted-identity"},
		{"200 with Remote-Party-ID of ours", msg("SIP/2.0 200 OK", append(peerOK, "Remote-Party-ID: <sip:10.0.2.1>;party=called")...), "remote-party-id"},
		{"486 with Contact of ours", msg("SIP/2.0 486 Busy Here", with(peerOK, "m: <sip:10.0.2.1>")...), "contact"},
		{"302 to our line 2", msg("SIP/2.0 302 Moved Temporarily", with(peerOK, "Contact: <sip:10.0.2.1>")...), ""},
		{"300 to our lines", msg("SIP/2.0 300 Multiple Choices", with(peerOK, "Contact: <sip:10.0.2.1>, <sip:10.0.3.1>")...), ""},
		{"response with Record-Route of ours", msg("SIP/2.0 200 OK", append(peerOK, "Record-Route: <sip:10.0.0.2;lr>")...), ""},
		// Not parsed: left to HasAddr.
		{"no header end", []byte("INVITE sip:a@10.0.1.1 SIP/2.0\r\nFrom: <sip:10.0.2.1>\r\n"), ""},
	}
	for _, tt := range tests {
		field, found := Impersonation(tt.msg, ours)
		if field != tt.want || found != (tt.want != "") {
			t.Errorf("%s: Impersonation(%q) = %q, %v, want %q", tt.name, tt.msg, field, found, tt.want)
		}
	}
}

func TestImpersonationAllocs(t *testing.T) {
	m := msg("INVITE sip:alice@10.0.1.1 SIP/2.0", append(peerInvite, "P-Asserted-Identity: <sip:10.7.2.1>")...)
	if n := testing.AllocsPerRun(100, func() { Impersonation(m, ours) }); n != 0 {
		t.Errorf("Impersonation allocates %v times, want 0", n)
	}
}

func TestSniffs(t *testing.T) {
	tests := []struct {
		in        string
		looks, ka bool
	}{
		{"INVITE sip:a@10.0.1.1 SIP/2.0\r\n", true, false},
		{"SIP/2.0 200 OK\r\n", true, false},
		{"\r\nINVITE sip:a@10.0.1.1 SIP/2.0\r\n", true, false},
		{" \r\n\tOPTIONS sip:a SIP/2.0\r\n", true, false},
		{"invite sip:a@10.0.1.1 SIP/2.0\r\n", true, false},
		{"INVITE  sip:a@10.0.1.1 SIP/2.0\r\n", true, false},
		{"INVITE\tsip:a@10.0.1.1 SIP/2.0\r\n", true, false},
		{"AVERYLONGMETHODNAMEINDEED sip:a@10.0.1.1 SIP/2.0\r\n", true, false},
		{"INVITE <sip:a@10.0.1.1> SIP/2.0\r\n", true, false},
		{"INVITE foo:a@10.0.1.1 SIP/2.0\r\n", true, false},
		{"INVITE tel:+123 SIP/2.0\r\n", true, false},
		{"sip/2.0 200 OK\r\n", true, false},
		{"hello world\r\nsip:x", false, false}, // not on the first line
		{"GET / HTTP/1.1\r\n", false, false},
		{"\x80\x00\x00\x01sip:", false, false}, // RTP
		{"\x00\x01\x00\x00", false, false},     // STUN
		{"", false, true},
		{"\r\n\r\n", false, true},
		{"\r\n", false, true},
		{" \t", false, true},
		{"\r\nx", false, false},
	}
	for _, tt := range tests {
		if got := LooksLikeSIP([]byte(tt.in)); got != tt.looks {
			t.Errorf("LooksLikeSIP(%q) = %v, want %v", tt.in, got, tt.looks)
		}
		if got := KeepAlive([]byte(tt.in)); got != tt.ka {
			t.Errorf("KeepAlive(%q) = %v, want %v", tt.in, got, tt.ka)
		}
	}
}

// FuzzImpersonation: Impersonation never panics, and what it reports is
// real: the field it names is a field of the message holding an address
// of ours, and a message without any address of ours is never refused.
func FuzzImpersonation(f *testing.F) {
	f.Add(msg("INVITE sip:alice@10.0.1.1 SIP/2.0", peerInvite...))
	f.Add(msg("INVITE sip:alice@10.0.1.1 SIP/2.0", with(peerInvite, `From: "Mum (line 2)" <sip:10.0.2.1>;tag=x`)...))
	f.Add(msg("SIP/2.0 302 Moved", with(peerOK, "Contact: <sip:10.0.2.1>")...))
	f.Add(msg("SIP/2.0 200 OK", with(peerOK, "m: <sip:10.0.2.1>")...))
	addTortureSeeds(f)
	f.Fuzz(func(t *testing.T, m []byte) {
		field, found := Impersonation(m, ours)
		if found != (field != "") {
			t.Fatalf("Impersonation(%q) = %q, %v", m, field, found)
		}
		if !found {
			return
		}
		if !HasAddr(m, ours) {
			t.Fatalf("Impersonation(%q) found %q in a message with no address of ours", m, field)
		}
		if _, _, err := Rewrite(nil, m, func(a [4]byte) ([4]byte, bool) { return a, false }); err != nil {
			t.Fatalf("Impersonation(%q) found %q in a message Rewrite refuses (%v)", m, field, err)
		}
		// The same message with our addresses moved to a third node has
		// nothing to find.
		moved := []byte(strings.ReplaceAll(string(m), "10.0.", "10.9."))
		if HasAddr(moved, ours) {
			return // an address of ours that the replacement did not reach
		}
		if f2, ok := Impersonation(moved, ours); ok {
			t.Fatalf("Impersonation(%q) = %q without an address of ours", moved, f2)
		}
	})
}
