package rewrite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/privacy"
	"github.com/peerline/peerline/pkg/sipmsg"
)

// Bob's node (7 at Alice's) calls Alice's line 2 from its line 1: the
// INVITE as it arrives from the tunnel, wire plan, with the caller's
// identity fields given.
func anonInvite(from, extra string) []byte {
	sdp := "v=0\r\no=- 1 1 IN IP4 10.255.1.1\r\ns=-\r\nc=IN IP4 10.255.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	msg := "INVITE sip:2@10.254.2.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.255.1.1:5060;branch=z9hG4bK-anon1;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: " + from + ";tag=ft1\r\n" +
		"To: <sip:2@10.254.2.1>\r\n" +
		"Call-ID: anon-1\r\n" +
		"CSeq: 7 INVITE\r\n" +
		"Contact: <sip:caller@10.255.1.1:5060>\r\n" +
		extra +
		"Content-Type: application/sdp\r\n" +
		"Content-Length: " + fmt.Sprint(len(sdp)) + "\r\n\r\n" + sdp
	return udp4("10.255.1.1", "10.254.2.1", 5060, 5060, []byte(msg))
}

const anonFrom = `"Anonymous" <sip:anonymous@anonymous.invalid>`

// writeIn writes one packet from the peer into d and returns what reached
// the phones.
func writeIn(t *testing.T, d *Device, inner *fakeTUN, pkt []byte) [][]byte {
	t.Helper()
	before := len(inner.written)
	buf := make([]byte, testOffset+len(pkt), testOffset+4096)
	copy(buf[testOffset:], pkt)
	if _, err := d.Write([][]byte{buf}, testOffset); err != nil {
		t.Fatalf("Write() error %v", err)
	}
	return inner.written[before:]
}

// TestAnonymousRefused: an anonymous call from a peer whose rule is
// refuse never reaches the phone; the caller gets a 433 through the
// tunnel, in the wire plan (golden packet), and its ACK is absorbed.
func TestAnonymousRefused(t *testing.T) {
	inner := newFakeTUN()
	d := Wrap(inner, bobAtAlice, nil)
	d.SetAnonymous(privacy.Rule{Action: privacy.Refuse})
	if got := writeIn(t, d, inner, anonInvite(anonFrom, "")); len(got) != 0 {
		t.Fatalf("the refused INVITE reached the phone: %q", got)
	}
	sent := readOnce(t, d, 2)
	if len(sent) != 1 {
		t.Fatalf("Read() sent %d packets to the peer, want the 433", len(sent))
	}
	got := sent[0]
	golden(t, "anonymous-433.golden.pcap", [][]byte{got})
	checkPacket(t, got)
	leavesNoPlanAddress(t, got, bobAtAlice, numplan.Outbound)
	if src, dst := ipString(got[offSrc:]), ipString(got[offDst:]); src != "10.255.2.1" || dst != "10.254.1.1" {
		t.Errorf("433 from %s to %s, want from our line 2 (10.255.2.1) to the caller (10.254.1.1)", src, dst)
	}
	status, hdr := parseResponse(t, udpPayload(got))
	if status != "SIP/2.0 433 Anonymity Disallowed" {
		t.Errorf("status line %q", status)
	}
	for k, want := range map[string]string{
		"Via":            "SIP/2.0/UDP 10.254.1.1:5060;branch=z9hG4bK-anon1;rport",
		"From":           anonFrom + ";tag=ft1",
		"Call-Id":        "anon-1",
		"Cseq":           "7 INVITE",
		"Content-Length": "0",
		"Contact":        "",
	} {
		if got := hdr.Get(k); got != want {
			t.Errorf("433 %s: %q, want %q", k, got, want)
		}
	}
	to := hdr.Get("To")
	if !strings.HasPrefix(to, "<sip:2@10.255.2.1>;tag="+anonTagPrefix) {
		t.Errorf("433 To: %q, want the INVITE's, mapped, with a tag of ours", to)
	}
	s := d.Stats()
	if s.Inbound.SIPAnonymousRefused != 1 || s.Inbound.Packets != 1 || s.Outbound.SIPAnswerToPeer != 1 {
		t.Errorf("Stats() = %+v, want one INVITE refused and one answer sent", s)
	}
	if s.Inbound.SIPRefusals["anonymous-refused"] != 1 {
		t.Errorf("Stats().Inbound.SIPRefusals = %v, want anonymous-refused 1", s.Inbound.SIPRefusals)
	}

	// A retransmission gets the same answer (the IP ID aside).
	writeIn(t, d, inner, anonInvite(anonFrom, ""))
	again := readOnce(t, d, 1)
	if len(again) != 1 || !bytes.Equal(udpPayload(again[0]), udpPayload(got)) {
		t.Errorf("the retransmission's answer differs:\n%q\nwant\n%q", again, got)
	}

	// The caller's ACK for the 433 stays here.
	ack := udp4("10.255.1.1", "10.254.2.1", 5060, 5060, []byte("ACK sip:2@10.254.2.1 SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 10.255.1.1:5060;branch=z9hG4bK-anon1;rport\r\n"+
		"From: "+anonFrom+";tag=ft1\r\nTo: "+strings.ReplaceAll(to, "10.255.", "10.254.")+"\r\n"+
		"Call-ID: anon-1\r\nCSeq: 7 ACK\r\nContent-Length: 0\r\n\r\n"))
	if got := writeIn(t, d, inner, ack); len(got) != 0 {
		t.Errorf("the ACK of our 433 reached the phone: %q", got)
	}
	if n := d.Stats().Inbound.SIPAnonymousACK; n != 1 {
		t.Errorf("SIPAnonymousACK = %d, want 1", n)
	}
	if again := readAll(t, d, 1); len(again) != 0 {
		t.Errorf("the ACK was answered: %q", again)
	}
}

// TestAnonymousRedirected: redirect to line 3 answers with a 302 whose
// Contact is line 3's phone as the caller's node knows it (wire 10.255.3.1
// here, 10.<its index for us>.3.1 there); the caller's new INVITE, to line
// 3, passes.
func TestAnonymousRedirected(t *testing.T) {
	inner := newFakeTUN()
	d := Wrap(inner, bobAtAlice, nil)
	d.SetAnonymous(privacy.Rule{Action: privacy.Redirect, Line: 3})
	if got := writeIn(t, d, inner, anonInvite(anonFrom, "Privacy: id\r\n")); len(got) != 0 {
		t.Fatalf("the redirected INVITE reached the phone: %q", got)
	}
	sent := readOnce(t, d, 1)
	if len(sent) != 1 {
		t.Fatalf("Read() sent %d packets, want the 302", len(sent))
	}
	golden(t, "anonymous-302.golden.pcap", sent)
	checkPacket(t, sent[0])
	leavesNoPlanAddress(t, sent[0], bobAtAlice, numplan.Outbound)
	status, hdr := parseResponse(t, udpPayload(sent[0]))
	if status != "SIP/2.0 302 Moved Temporarily" || hdr.Get("Contact") != "<sip:3@10.255.3.1>" {
		t.Errorf("answer %q with Contact %q, want a 302 to <sip:3@10.255.3.1>", status, hdr.Get("Contact"))
	}
	// What Bob's phone receives: Bob's rewriter maps the wire for his
	// plan, where Alice is some index of his, say 4.
	bob, _ := Packet(make([]byte, 0, 4096), sent[0], 4, numplan.Inbound)
	if _, h := parseResponse(t, udpPayload(bob)); h.Get("Contact") != "<sip:3@10.4.3.1>" {
		t.Errorf("at the caller the Contact reads %q, want <sip:3@10.4.3.1>", h.Get("Contact"))
	}

	// The caller follows it: an INVITE to line 3 reaches line 3's phone.
	follow := bytes.ReplaceAll(anonInvite(anonFrom, "Privacy: id\r\n"), []byte("10.254.2.1"), []byte("10.254.3.1"))
	got := writeIn(t, d, inner, fixIPChecksum(udp4("10.255.1.1", "10.254.3.1", 5060, 5060, udpPayload(follow))))
	if len(got) != 1 || ipString(got[0][offDst:]) != "10.0.3.1" {
		t.Errorf("the INVITE to line 3 did not reach line 3's phone: %q", got)
	}
	if s := d.Stats().Inbound; s.SIPAnonymousRedirected != 1 || s.SIPRefusals["anonymous-redirected"] != 1 {
		t.Errorf("Stats().Inbound = %+v, want one redirected", s)
	}
}

// TestAnonymousPolicyTable is classification × policy: only an anonymous
// caller meets the rule, and a redirect to the line called passes.
func TestAnonymousPolicyTable(t *testing.T) {
	callers := []struct {
		name      string
		from      string
		extra     string
		anonymous bool
	}{
		{"identified", `"Bob" <sip:101@10.255.1.1>`, "", false},
		{"privacy none", `"Bob" <sip:101@10.255.1.1>`, "Privacy: none\r\n", false},
		{"privacy session", `"Bob" <sip:101@10.255.1.1>`, "Privacy: session\r\n", false},
		{"privacy id", `"Bob" <sip:101@10.255.1.1>`, "Privacy: id\r\n", true},
		{"privacy header;user", `<sip:101@10.255.1.1>`, "Privacy: header;user\r\n", true},
		{"privacy in a second field", `<sip:101@10.255.1.1>`, "Privacy: none\r\nPrivacy: id\r\n", true},
		{"privacy folded", `<sip:101@10.255.1.1>`, "Privacy: none;\r\n id\r\n", true},
		{"anonymous URI", `<sip:anonymous@anonymous.invalid>`, "", true},
		{"anonymous user", `<sip:Anonymous@10.255.1.1>`, "", true},
		{"display Anonymous", `"anonymous" <sip:101@10.255.1.1>`, "", true},
	}
	rules := []struct {
		name string
		rule privacy.Rule
		want string // for an anonymous caller: "phone", "433", "302"
	}{
		{"zero", privacy.Rule{}, "phone"},
		{"accept", privacy.Rule{Action: privacy.Accept}, "phone"},
		{"refuse", privacy.Rule{Action: privacy.Refuse}, "433"},
		{"redirect 3", privacy.Rule{Action: privacy.Redirect, Line: 3}, "302"},
		{"redirect to the line called", privacy.Rule{Action: privacy.Redirect, Line: 2}, "phone"},
	}
	for _, c := range callers {
		for _, r := range rules {
			t.Run(c.name+"/"+r.name, func(t *testing.T) {
				inner := newFakeTUN()
				d := Wrap(inner, bobAtAlice, nil)
				d.SetAnonymous(r.rule)
				phone := writeIn(t, d, inner, anonInvite(c.from, c.extra))
				answers := readAll(t, d, 1)
				got := "phone"
				switch {
				case len(phone) == 1 && len(answers) == 0:
				case len(phone) == 0 && len(answers) == 1:
					status, _ := parseResponse(t, udpPayload(answers[0]))
					got = strings.Fields(status)[1]
				default:
					t.Fatalf("%d packets to the phone, %d to the peer", len(phone), len(answers))
				}
				want := r.want
				if !c.anonymous {
					want = "phone"
				}
				if got != want {
					t.Errorf("went to %s, want %s", got, want)
				}
			})
		}
	}
}

// TestAnonymousOnlyInitialInvites: a re-INVITE (To tag), other requests
// and responses of an anonymous caller pass; a reload to accept lets the
// next call through.
func TestAnonymousOnlyInitialInvites(t *testing.T) {
	inner := newFakeTUN()
	d := Wrap(inner, bobAtAlice, nil)
	d.SetAnonymous(privacy.Rule{Action: privacy.Refuse})
	reinvite := bytes.Replace(udpPayload(anonInvite(anonFrom, "")), []byte("To: <sip:2@10.254.2.1>"), []byte("To: <sip:2@10.254.2.1>;tag=x"), 1)
	options := bytes.Replace(reinvite, []byte("INVITE sip:"), []byte("OPTIONS sip:"), 1)
	for _, msg := range [][]byte{reinvite, options} {
		if got := writeIn(t, d, inner, udp4("10.255.1.1", "10.254.2.1", 5060, 5060, msg)); len(got) != 1 {
			t.Errorf("%.20q did not reach the phone", msg)
		}
	}
	if got := d.Anonymous(); got.Action != privacy.Refuse {
		t.Errorf("Anonymous() = %+v", got)
	}
	d.SetAnonymous(privacy.Rule{Action: privacy.Accept})
	if got := writeIn(t, d, inner, anonInvite(anonFrom, "")); len(got) != 1 {
		t.Errorf("after accept, the anonymous INVITE did not reach the phone")
	}
	if s := d.Stats(); s.Inbound.SIPAnonymousRefused != 0 || s.Outbound.Packets != 0 {
		t.Errorf("Stats() = %+v, want nothing refused", s)
	}
}

// TestAnonymousFragmentedAnswer: an answer over the tunnel MTU (an INVITE
// with many Vias) leaves in fragments that reassemble to a valid 433.
func TestAnonymousFragmentedAnswer(t *testing.T) {
	inner := newFakeTUN()
	d := Wrap(inner, bobAtAlice, nil)
	d.SetMTU(576)
	d.SetAnonymous(privacy.Rule{Action: privacy.Refuse})
	var vias strings.Builder
	for k := range maxVias - 1 {
		fmt.Fprintf(&vias, "Via: SIP/2.0/UDP proxy-%02d.example.net:5060;branch=z9hG4bK-%s\r\n", k, strings.Repeat("v", 30))
	}
	pkt := anonInvite(anonFrom, "")
	msg := bytes.Replace(udpPayload(pkt), []byte("Max-Forwards"), []byte(vias.String()+"Max-Forwards"), 1)
	writeIn(t, d, inner, udp4("10.255.1.1", "10.254.2.1", 5060, 5060, msg))
	frags := readAll(t, d, 1)
	if len(frags) < 2 {
		t.Fatalf("%d packets, want the 433 in fragments", len(frags))
	}
	for _, f := range frags {
		if len(f) > 576 {
			t.Errorf("fragment of %d bytes over the MTU", len(f))
		}
	}
	whole := reassemble(frags)
	checkPacket(t, whole)
	if status, hdr := parseResponse(t, udpPayload(whole)); status != "SIP/2.0 433 Anonymity Disallowed" || len(hdr.Values("Via")) != maxVias {
		t.Errorf("reassembled %q with %d Vias", status, len(hdr.Values("Via")))
	}
}

// TestAnonymousPendingBounded: answers no Read takes are bounded.
func TestAnonymousPendingBounded(t *testing.T) {
	inner := newFakeTUN()
	d := Wrap(inner, bobAtAlice, nil)
	d.SetAnonymous(privacy.Rule{Action: privacy.Refuse})
	for range maxAnonPending + 5 {
		writeIn(t, d, inner, anonInvite(anonFrom, ""))
	}
	s := d.Stats()
	if s.Outbound.SIPAnswerToPeer != maxAnonPending || s.Inbound.AnonymousReplyFailed != 5 || s.Inbound.SIPAnonymousRefused != maxAnonPending+5 {
		t.Errorf("Stats() = %+v, want %d answers queued and 5 failed", s, maxAnonPending)
	}
	if len(inner.written) != 0 {
		t.Errorf("%d INVITEs reached the phone", len(inner.written))
	}
}

// wakeTUN is a TUN whose Read blocks until a packet is offered or WakeRead,
// as the daemon's TUN does.
type wakeTUN struct {
	fakeTUN
	wake chan struct{}
}

func (w *wakeTUN) WakeRead() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *wakeTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	<-w.wake
	return 0, nil
}

var _ tun.Device = (*wakeTUN)(nil)

// TestAnonymousWakesRead: the answer does not wait for the phones to send
// something: the blocked Read is woken and returns it.
func TestAnonymousWakesRead(t *testing.T) {
	inner := &wakeTUN{fakeTUN: *newFakeTUN(), wake: make(chan struct{}, 1)}
	d := Wrap(inner, bobAtAlice, nil)
	d.SetAnonymous(privacy.Rule{Action: privacy.Refuse})
	var (
		wg   sync.WaitGroup
		got  int
		size int
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		bufs := [][]byte{make([]byte, testOffset+4096)}
		sizes := make([]int, 1)
		for got == 0 {
			n, err := d.Read(bufs, sizes, testOffset)
			if err != nil {
				return
			}
			got, size = n, sizes[0]
		}
	}()
	time.Sleep(10 * time.Millisecond) // let Read block
	buf := anonInvite(anonFrom, "")
	if _, err := d.Write([][]byte{buf}, 0); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if got != 1 || size == 0 {
		t.Errorf("the woken Read returned %d packets, size %d; want the 433", got, size)
	}
}

// TestAnonymousAllocs: with a policy set, RTP and in-dialog SIP from the
// peer still allocate nothing, and an identified INVITE under the zero
// policy neither.
func TestAnonymousAllocs(t *testing.T) {
	for _, tt := range []struct {
		name string
		rule privacy.Rule
		pkt  []byte
	}{
		{"RTP under refuse", privacy.Rule{Action: privacy.Refuse}, rtpWire},
		{"a response under refuse", privacy.Rule{Action: privacy.Refuse}, onWireB.fromBob(okTmpl)},
		{"an INVITE under accept", privacy.Rule{}, anonInvite(anonFrom, "")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := Wrap(&discardTUN{}, bobAtAlice, nil)
			d.SetAnonymous(tt.rule)
			buf := make([]byte, len(tt.pkt), 4096)
			bufs := [][]byte{buf}
			run := func() {
				bufs[0] = buf[:len(tt.pkt)]
				copy(bufs[0], tt.pkt)
				_, _ = d.Write(bufs, 0)
			}
			run()
			if allocs := testing.AllocsPerRun(200, run); allocs != 0 {
				t.Errorf("Write allocates %v times, want 0", allocs)
			}
		})
	}
}

// FuzzAnonymousReply sends whatever a hostile peer may send as an
// anonymous INVITE through a Device that refuses or redirects: it never
// panics, nothing of it reaches the phone if it is answered, and what goes
// back to the peer is a valid packet in the wire plan with no address of
// ours left to map, whose ACK is recognised.
func FuzzAnonymousReply(f *testing.F) {
	f.Add(udpPayload(anonInvite(anonFrom, "")), false)
	f.Add(udpPayload(anonInvite(`<sip:101@10.255.1.1>`, "Privacy: id\r\n")), true)
	f.Add(udpPayload(anonInvite(`"x" <sip:anonymous@10.0.1.1>`, "Privacy: id\r\n")), true)
	f.Add([]byte("INVITE sip:2@10.254.2.1 SIP/2.0\r\nv: a\r\nf: <sip:anonymous@anonymous.invalid>\r\nt:\r\n c\r\ni: d\r\nCSeq: 1 INVITE\r\n\r\n"), false)
	f.Add([]byte("INVITE sip:2@10.254.2.1 SIP/2.0\nVia: SIP/2.0/UDP 10.7.1.1\nFrom: Anonymous <sip:a@10.254.9.9>\nTo: \"<\" c\nCall-ID: 10.0.1.1\nCSeq: 1\tINVITE\nPrivacy: id\n\n"), true)
	if msg, err := os.ReadFile("../sipmsg/testdata/bench/invite.sip"); err == nil {
		f.Add(append(bytes.Clone(msg[:len(msg)-2]), "Privacy: id\r\n\r\n"...), false)
	}
	f.Fuzz(func(t *testing.T, msg []byte, redirect bool) {
		if len(msg) > 4000 {
			return
		}
		rule := privacy.Rule{Action: privacy.Refuse}
		if redirect {
			rule = privacy.Rule{Action: privacy.Redirect, Line: 3}
		}
		inner := newFakeTUN()
		d := Wrap(inner, bobAtAlice, nil)
		d.SetAnonymous(rule)
		pkt := udp4("10.255.1.1", "10.254.2.1", 5060, 5060, msg)
		buf := make([]byte, len(pkt), 1<<16)
		copy(buf, pkt)
		if _, err := d.Write([][]byte{buf}, 0); err != nil {
			t.Fatal(err)
		}
		for _, p := range inner.written {
			leavesNoPlanAddress(t, p, bobAtAlice, numplan.Inbound)
		}
		sent := readAll(t, d, 4)
		if len(sent) == 0 {
			return
		}
		if len(inner.written) != 0 {
			t.Fatalf("answered and delivered: %q", msg)
		}
		whole := sent[0]
		if len(sent) > 1 {
			whole = reassemble(sent)
		}
		if !checksumsValid(whole) || int(binary.BigEndian.Uint16(whole[offTotalLen:])) != len(whole) {
			t.Fatalf("answer to %q has wrong lengths or checksums: %q", msg, whole)
		}
		if src, dst := ipString(whole[offSrc:]), ipString(whole[offDst:]); src != "10.255.2.1" || dst != "10.254.1.1" {
			t.Fatalf("answer from %s to %s", src, dst)
		}
		leavesNoPlanAddress(t, whole, bobAtAlice, numplan.Outbound)
		resp := udpPayload(whole)
		if _, err := sipmsg.Parse(resp); err != nil {
			t.Fatalf("sipmsg refuses the answer %q to %q: %v", resp, msg, err)
		}
		status, hdr := parseResponse(t, resp)
		want := "SIP/2.0 433 Anonymity Disallowed"
		if redirect {
			want = "SIP/2.0 302 Moved Temporarily"
			if c := hdr.Get("Contact"); c != "<sip:3@10.255.3.1>" {
				t.Fatalf("302 Contact %q", c)
			}
		}
		if status != want {
			t.Fatalf("status %q, want %q", status, want)
		}
		ack := udp4("10.255.1.1", "10.254.2.1", 5060, 5060, []byte("ACK sip:b SIP/2.0\r\nTo: "+hdr.Get("To")+"\r\n\r\n"))
		before := len(inner.written)
		d.Write([][]byte{ack}, 0)
		if len(inner.written) != before {
			t.Fatalf("the ACK of %q reached the phone", resp)
		}
	})
}

func ipString(b []byte) string { return fmt.Sprintf("%d.%d.%d.%d", b[0], b[1], b[2], b[3]) }
