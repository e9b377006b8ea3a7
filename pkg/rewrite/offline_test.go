package rewrite

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/sipmsg"
)

// deskInvite is a Yealink desk phone's INVITE (sipmsg's benchmark message),
// sent from Alice's phone, port 5062, to line 1 at node 7.
func deskInvite(t testing.TB) []byte {
	t.Helper()
	msg, err := os.ReadFile("../sipmsg/testdata/bench/invite.sip")
	if err != nil {
		t.Fatal(err)
	}
	return udp4("10.0.1.1", "10.7.1.1", 5062, 5060, msg)
}

// readOnce reads one batch of packets from d and returns those it would
// send to the peer.
func readOnce(t *testing.T, d *Device, batch int) [][]byte {
	t.Helper()
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, testOffset+4096)
	}
	sizes := make([]int, batch)
	n, err := d.Read(bufs, sizes, testOffset)
	if err != nil {
		t.Fatalf("Read() error %v", err)
	}
	var out [][]byte
	for i := range n {
		if sizes[i] > 0 {
			out = append(out, bytes.Clone(bufs[i][testOffset:testOffset+sizes[i]]))
		}
	}
	return out
}

// TestOfflineAnswer calls through a tunnel whose peer is offline: the INVITE
// goes nowhere, and the phone gets a 480 from the address it called, with
// the transaction's fields copied (golden packet).
func TestOfflineAnswer(t *testing.T) {
	invite := deskInvite(t)
	inner := newFakeTUN(invite)
	d := Wrap(inner, bobAtAlice, nil)
	d.SetPeerState(false, "offline: no answer from the peer")
	if sent := readOnce(t, d, 1); len(sent) != 0 {
		t.Fatalf("Read() sent %q to an offline peer", sent)
	}
	if len(inner.written) != 1 {
		t.Fatalf("%d packets written back to the phone, want one 480", len(inner.written))
	}
	got := inner.written[0]
	golden(t, "offline-480.golden.pcap", [][]byte{got})
	checkPacket(t, got)

	// What the golden file must hold, spelled out.
	if src, dst := got[offSrc:offSrc+4], got[offDst:offDst+4]; !bytes.Equal(src, invite[offDst:offDst+4]) || !bytes.Equal(dst, invite[offSrc:offSrc+4]) {
		t.Errorf("480 from %v to %v, want from the called address to the phone's", src, dst)
	}
	if sport, dport := binary.BigEndian.Uint16(got[20:]), binary.BigEndian.Uint16(got[22:]); sport != 5060 || dport != 5062 {
		t.Errorf("480 from port %d to %d, want 5060 to 5062", sport, dport)
	}
	status, hdr := parseResponse(t, udpPayload(got))
	if status != "SIP/2.0 480 Peer Offline" {
		t.Errorf("status line %q", status)
	}
	for k, want := range map[string]string{
		"Via":            "SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK1840364528;rport",
		"From":           `"Alice Desk" <sip:101@10.0.1.1:5060>;tag=1307471052`,
		"Call-Id":        "1962426466@10.0.1.1",
		"Cseq":           "2 INVITE",
		"Content-Length": "0",
		"Warning":        `399 peerline "offline: no answer from the peer"`,
	} {
		if got := hdr.Get(k); got != want {
			t.Errorf("480 %s: %q, want %q", k, got, want)
		}
	}
	if to := hdr.Get("To"); !strings.HasPrefix(to, "<sip:201@10.7.1.1:5060>;tag="+offlineTagPrefix) {
		t.Errorf("480 To: %q, want the INVITE's with a tag of ours", to)
	}
	s := d.Stats().Outbound
	if s.SIPPeerOffline != 1 || s.Packets != 1 {
		t.Errorf("Stats().Outbound = %+v, want one INVITE answered offline", s)
	}

	// The phone acknowledges the 480; the ACK stays here, online or not.
	d.SetPeerState(true, "")
	ack := udp4("10.0.1.1", "10.7.1.1", 5062, 5060, []byte("ACK sip:201@10.7.1.1:5060 SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK1840364528;rport\r\n"+
		"From: "+hdr.Get("From")+"\r\nTo: "+hdr.Get("To")+"\r\nCall-ID: 1962426466@10.0.1.1\r\n"+
		"CSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n"))
	inner.toRead = [][]byte{ack}
	if sent := readOnce(t, d, 1); len(sent) != 0 {
		t.Errorf("Read() sent the ACK of our own 480: %q", sent)
	}
	if s := d.Stats().Outbound; s.SIPOfflineACK != 1 {
		t.Errorf("Stats().Outbound = %+v, want the ACK absorbed", s)
	}
	// Online again: the same INVITE goes to the peer.
	inner.toRead = [][]byte{bytes.Clone(invite)}
	if sent := readOnce(t, d, 1); len(sent) != 1 {
		t.Errorf("Read() sent %d packets of an INVITE to an online peer, want 1", len(sent))
	}
}

// parseResponse reads a SIP response with net/textproto: a parser that
// shares no code with the one under test.
func parseResponse(t testing.TB, msg []byte) (status string, hdr textproto.MIMEHeader) {
	t.Helper()
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg)))
	status, err := r.ReadLine()
	if err != nil {
		t.Fatalf("reading the status line of %q: %v", msg, err)
	}
	hdr, err = r.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("reading the headers of %q: %v", msg, err)
	}
	return status, hdr
}

// offlineMsg is a request from Alice's phone to Bob's, with header lines
// hdrs (CRLF added).
func offlineMsg(start string, hdrs ...string) []byte {
	return udp4("10.0.1.1", "10.7.2.1", 5060, 5060, []byte(start+"\r\n"+strings.Join(hdrs, "\r\n")+"\r\n\r\n"))
}

func TestOfflineWhichMessages(t *testing.T) {
	const (
		inv  = "INVITE sip:bob@10.7.2.1 SIP/2.0"
		via  = "Via: SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK-1"
		from = "From: <sip:alice@10.0.1.1>;tag=a1"
		to   = "To: <sip:bob@10.7.2.1>"
		cid  = "Call-ID: c1@10.0.1.1"
		cseq = "CSeq: 1 INVITE"
		cl   = "Content-Length: 0"
	)
	tests := []struct {
		name    string
		online  bool
		pkt     []byte
		answer  bool // a 480 is written back and nothing sent
		wantTo  string
		wantVia []string
	}{
		{"initial INVITE", false, offlineMsg(inv, via, from, to, cid, cseq, cl), true, "<sip:bob@10.7.2.1>", []string{"SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK-1"}},
		{"initial INVITE, peer online", true, offlineMsg(inv, via, from, to, cid, cseq, cl), false, "", nil},
		{"re-INVITE (To has a tag)", false, offlineMsg(inv, via, from, to+";tag=b1", cid, cseq, cl), false, "", nil},
		{"re-INVITE, tag spelt loosely", false, offlineMsg(inv, via, from, "t: <sip:bob@10.7.2.1> ; TAG = b1", cid, cseq, cl), false, "", nil},
		{"re-INVITE, bare URI with tag", false, offlineMsg(inv, via, from, "To: sip:bob@10.7.2.1;tag=b1", cid, cseq, cl), false, "", nil},
		{"tag only inside the display name", false, offlineMsg(inv, via, from, `To: "Bob;tag=x <y>" <sip:bob@10.7.2.1>`, cid, cseq, cl), true,
			`"Bob;tag=x <y>" <sip:bob@10.7.2.1>`, []string{"SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK-1"}},
		{"compact forms", false, offlineMsg(inv, "v: SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK-2", "f: <sip:alice@10.0.1.1>;tag=a2",
			"t: <sip:bob@10.7.2.1>", "i: c2@10.0.1.1", cseq, "l: 0"), true, "<sip:bob@10.7.2.1>", []string{"SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK-2"}},
		{"folded To, two Vias", false, offlineMsg(inv, via, "Via: SIP/2.0/UDP 10.0.1.2:5060;branch=z9hG4bK-0", from,
			"To:\r\n  <sip:bob@10.7.2.1>", cid, cseq, cl), true, "<sip:bob@10.7.2.1>",
			[]string{"SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK-1", "SIP/2.0/UDP 10.0.1.2:5060;branch=z9hG4bK-0"}},
		{"To with an unclosed <", false, offlineMsg(inv, via, from, "To: Bob <sip:bob@10.7.2.1", cid, cseq, cl), false, "", nil},
		{"To with an unclosed quote", false, offlineMsg(inv, via, from, `To: "Bob <sip:bob@10.7.2.1>`, cid, cseq, cl), false, "", nil},
		{"no Call-ID", false, offlineMsg(inv, via, from, to, cseq, cl), false, "", nil},
		{"two To", false, offlineMsg(inv, via, from, to, to, cid, cseq, cl), false, "", nil},
		{"no Via", false, offlineMsg(inv, from, to, cid, cseq, cl), false, "", nil},
		{"CSeq of another method", false, offlineMsg(inv, via, from, to, cid, "CSeq: 1 BYE", cl), false, "", nil},
		{"a control character in From", false, offlineMsg(inv, via, "From: <sip:alice@10.0.1.1>\x01;tag=a1", to, cid, cseq, cl), false, "", nil},
		{"OPTIONS", false, offlineMsg("OPTIONS sip:bob@10.7.2.1 SIP/2.0", via, from, to, cid, "CSeq: 1 OPTIONS", cl), false, "", nil},
		{"CANCEL", false, offlineMsg("CANCEL sip:bob@10.7.2.1 SIP/2.0", via, from, to, cid, "CSeq: 1 CANCEL", cl), false, "", nil},
		{"BYE", false, offlineMsg("BYE sip:bob@10.7.2.1 SIP/2.0", via, from, to+";tag=b1", cid, "CSeq: 2 BYE", cl), false, "", nil},
		{"ACK of a call the peer answered", false, offlineMsg("ACK sip:bob@10.7.2.1 SIP/2.0", via, from, to+";tag=b1", cid, "CSeq: 1 ACK", cl), false, "", nil},
		{"response from the phone", false, udp4("10.0.1.1", "10.7.2.1", 5060, 5060, atAlice.sip(okTmpl)), false, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := newFakeTUN(tt.pkt)
			d := Wrap(inner, bobAtAlice, nil)
			d.SetPeerState(tt.online, "offline: the peer shut down")
			sent := readOnce(t, d, 1)
			if !tt.answer {
				if len(sent) != 1 || len(inner.written) != 0 {
					t.Fatalf("sent %d packets and answered %d, want it sent on and none answered", len(sent), len(inner.written))
				}
				return
			}
			if len(sent) != 0 || len(inner.written) != 1 {
				t.Fatalf("sent %d packets and answered %d, want none sent and one answered", len(sent), len(inner.written))
			}
			checkPacket(t, inner.written[0])
			_, hdr := parseResponse(t, udpPayload(inner.written[0]))
			to, tag, _ := strings.Cut(hdr.Get("To"), ";tag="+offlineTagPrefix)
			if to != tt.wantTo || tag == "" {
				t.Errorf("480 To: %q, want %q with a tag of ours", hdr.Get("To"), tt.wantTo)
			}
			if got := hdr.Values("Via"); strings.Join(got, "|") != strings.Join(tt.wantVia, "|") {
				t.Errorf("480 Via: %q, want %q", got, tt.wantVia)
			}
		})
	}
}

// TestOfflineRetransmission: the phone retransmits its INVITE until it has
// an answer; each copy gets the same answer, so the phone sees one dialog.
func TestOfflineRetransmission(t *testing.T) {
	invite := deskInvite(t)
	inner := newFakeTUN(invite, invite)
	d := Wrap(inner, bobAtAlice, nil)
	d.SetPeerState(false, "")
	if sent := readOnce(t, d, 2); len(sent) != 0 {
		t.Fatalf("Read() sent %d packets to an offline peer", len(sent))
	}
	if len(inner.written) != 2 {
		t.Fatalf("%d answers, want 2", len(inner.written))
	}
	if a, b := udpPayload(inner.written[0]), udpPayload(inner.written[1]); !bytes.Equal(a, b) {
		t.Errorf("two answers to one INVITE differ:\n%q\n%q", a, b)
	}
	// With no reason given, the Warning still says what happened.
	if _, hdr := parseResponse(t, udpPayload(inner.written[0])); hdr.Get("Warning") != `399 peerline "peer offline"` {
		t.Errorf("Warning: %q", hdr.Get("Warning"))
	}
}

// TestOfflineFragmentedInvite: a 3.3 kB INVITE arrives from the phone in
// three fragments while the peer is offline. It is reassembled, then
// answered; no fragment goes to the peer.
func TestOfflineFragmentedInvite(t *testing.T) {
	inner := newFakeTUN(frag3()...)
	d := Wrap(inner, bobAtAlice, nil)
	d.SetPeerState(false, "offline: no answer from the peer")
	if sent := readAll(t, d, 4); len(sent) != 0 {
		t.Fatalf("Read() sent %d packets to an offline peer", len(sent))
	}
	if len(inner.written) != 1 {
		t.Fatalf("%d packets written back, want one 480", len(inner.written))
	}
	checkPacket(t, inner.written[0])
	_, hdr := parseResponse(t, udpPayload(inner.written[0]))
	invite := atAlice.sip(bigInviteTmpl)
	if got := hdr.Get("Call-Id"); !bytes.Contains(invite, []byte("Call-ID: "+got+"\r\n")) {
		t.Errorf("480 Call-ID %q is not the INVITE's", got)
	}
	s := d.Stats().Outbound
	if s.SIPPeerOffline != 1 || s.Reassembly.Held != 3 || s.Reassembly.Datagrams != 1 {
		t.Errorf("Stats().Outbound = %+v, want 3 fragments held, reassembled, answered", s)
	}
}

// TestOfflineLargeAnswer: an INVITE with many long Vias makes a 480 over the
// MTU, which goes to the phone in fragments like any large reply.
func TestOfflineLargeAnswer(t *testing.T) {
	hdrs := []string{}
	for k := range maxVias {
		hdrs = append(hdrs, "Via: SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK-"+strings.Repeat("x", 200)+string(rune('a'+k)))
	}
	hdrs = append(hdrs, "From: <sip:alice@10.0.1.1>;tag=a1", "To: <sip:bob@10.7.2.1>", "Call-ID: big@10.0.1.1", "CSeq: 9 INVITE", "Content-Length: 0")
	invite := noDF(offlineMsg("INVITE sip:bob@10.7.2.1 SIP/2.0", hdrs...))
	inner := newFakeTUN(fragmentAt(invite, 1420)...)
	d := Wrap(inner, bobAtAlice, nil)
	d.SetPeerState(false, "")
	if sent := readAll(t, d, 4); len(sent) != 0 {
		t.Fatalf("Read() sent %d packets to an offline peer", len(sent))
	}
	if len(inner.written) < 3 {
		t.Fatalf("%d packets written back, want a 480 in fragments", len(inner.written))
	}
	for _, f := range inner.written {
		if len(f) > 1420 {
			t.Errorf("fragment of %d bytes over the MTU", len(f))
		}
		checkIPHeader(t, f)
	}
	whole := reassemble(inner.written)
	checkPacket(t, whole)
	if _, hdr := parseResponse(t, udpPayload(whole)); len(hdr.Values("Via")) != maxVias {
		t.Errorf("480 has %d Vias, want %d", len(hdr.Values("Via")), maxVias)
	}
}

// TestOfflineTooManyVias: an INVITE past the bound is left to the peer.
func TestOfflineTooManyVias(t *testing.T) {
	var hdrs []string
	for range maxVias + 1 {
		hdrs = append(hdrs, "Via: SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK-1")
	}
	hdrs = append(hdrs, "From: <sip:alice@10.0.1.1>;tag=a1", "To: <sip:bob@10.7.2.1>", "Call-ID: v@10.0.1.1", "CSeq: 1 INVITE", "Content-Length: 0")
	inner := newFakeTUN(offlineMsg("INVITE sip:bob@10.7.2.1 SIP/2.0", hdrs...))
	d := Wrap(inner, bobAtAlice, nil)
	d.SetPeerState(false, "")
	if sent := readOnce(t, d, 1); len(sent) != 1 || len(inner.written) != 0 {
		t.Errorf("sent %d, answered %d; want the INVITE sent on", len(sent), len(inner.written))
	}
}

// failTUN refuses every write.
type failTUN struct{ fakeTUN }

func (*failTUN) Write([][]byte, int) (int, error) { return 0, errors.New("tun gone") }

// TestOfflineWriteFails: when the answer cannot be written, the INVITE goes
// to the peer after all (the phone rings out as it would without peerline).
func TestOfflineWriteFails(t *testing.T) {
	inner := &failTUN{fakeTUN: *newFakeTUN(deskInvite(t))}
	d := Wrap(inner, bobAtAlice, nil)
	d.SetPeerState(false, "")
	if sent := readOnce(t, d, 1); len(sent) != 1 {
		t.Errorf("sent %d packets, want the INVITE", len(sent))
	}
	if s := d.Stats().Outbound; s.OfflineReplyFailed != 1 || s.SIPPeerOffline != 0 || s.SIPRewritten != 1 {
		t.Errorf("Stats().Outbound = %+v, want one failed answer and the INVITE rewritten", s)
	}
}

func TestSetPeerState(t *testing.T) {
	d := Wrap(newFakeTUN(), bobAtAlice, nil)
	if !d.PeerOnline() {
		t.Fatal("a new Device thinks its peer is offline")
	}
	allocs := testing.AllocsPerRun(100, func() { d.SetPeerState(false, "offline: no answer from the peer") })
	if allocs != 0 {
		t.Errorf("SetPeerState with an unchanged reason allocates %v times, want 0", allocs)
	}
	if d.PeerOnline() {
		t.Error("PeerOnline() after SetPeerState(false) = true")
	}
	for _, tt := range []struct{ in, want string }{
		{"offline: no answer from the peer", "offline: no answer from the peer"},
		{"say \"hi\"\r\nX-Injected: 1", "say 'hi'  X-Injected: 1"},
		{`back\slash`, "back'slash"},
		{"caf\xc3\xa9", "caf"},
		{strings.Repeat("a", 500), strings.Repeat("a", maxWarning)},
	} {
		if got := warningText(tt.in); got != tt.want {
			t.Errorf("warningText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestOfflineRTPUnaffected: media of a call in progress keeps flowing while
// the peer is offline (WireGuard queues or drops it, as before).
func TestOfflineRTPUnaffected(t *testing.T) {
	d := Wrap(newFakeTUN(rtpLocalA), bobAtAlice, nil)
	d.SetPeerState(false, "")
	if sent := readOnce(t, d, 1); len(sent) != 1 || !bytes.Equal(sent[0], rtpWire) {
		t.Errorf("Read() = %q, want %q", sent, rtpWire)
	}
}

// FuzzOffline480 checks the answer to whatever a phone might send as an
// INVITE: if one is made, it is a valid IPv4/UDP packet whose payload
// parses as SIP (by sipmsg and by net/textproto) with the INVITE's Call-ID
// and CSeq, and its ACK is recognised as ours.
func FuzzOffline480(f *testing.F) {
	msg, err := os.ReadFile("../sipmsg/testdata/bench/invite.sip")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(msg)
	f.Add(atAlice.sip(inviteTmpl))
	f.Add(atAlice.sip(bigInviteTmpl))
	f.Add(atBob.sip(callBackTmpl))
	f.Add([]byte("INVITE sip:b@10.7.2.1 SIP/2.0\r\nv: a\r\nf: b\r\nt:\r\n c\r\ni: d\r\nCSeq: 1 INVITE\r\n\r\n"))
	f.Add([]byte("INVITE sip:b@10.7.2.1 SIP/2.0\nVia: a\nFrom: b\nTo: \"<\" c\nCall-ID: d\nCSeq: 1\tINVITE\n\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		pkt := udp4("10.0.1.1", "10.7.2.1", 5062, 5060, msg)
		var fields inviteFields
		if !fields.parse(msg) {
			return
		}
		out, ok := appendOffline480(nil, pkt, ipHeaderLen, &fields, "peer offline", 1)
		if !ok {
			return
		}
		if !checksumsValid(out) || int(binary.BigEndian.Uint16(out[offTotalLen:])) != len(out) {
			t.Fatalf("480 for %q has wrong lengths or checksums: %q", msg, out)
		}
		resp := udpPayload(out)
		if _, _, err := sipmsg.Rewrite(nil, resp, func(a [4]byte) ([4]byte, bool) { return a, false }); err != nil {
			t.Fatalf("sipmsg refuses the 480 %q for %q: %v", resp, msg, err)
		}
		status, hdr := parseResponse(t, resp)
		if status != "SIP/2.0 480 Peer Offline" {
			t.Fatalf("480 status line %q", status)
		}
		// The INVITE's own Call-ID and CSeq, as textproto reads them,
		// when it can (it refuses some names sipmsg takes).
		r := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg)))
		if _, err := r.ReadLine(); err != nil {
			t.Fatalf("textproto reads no request line in %q: %v", msg, err)
		}
		if ih, err := r.ReadMIMEHeader(); err == nil {
			norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
			// SIP allows blanks between a header's name and its colon
			// ("i  : x"); textproto keeps them in the key.
			values := func(names ...string) []string {
				var out []string
				for k, v := range ih {
					if slices.Contains(names, textproto.CanonicalMIMEHeaderKey(strings.TrimRight(k, " \t"))) {
						out = append(out, v...)
					}
				}
				return out
			}
			want := values("Call-Id", "I")
			if len(want) != 1 || norm(hdr.Get("Call-Id")) != norm(want[0]) {
				t.Fatalf("480 Call-ID %q, INVITE's %q", hdr.Get("Call-Id"), want)
			}
			if want := values("Cseq"); len(want) != 1 || norm(hdr.Get("Cseq")) != norm(want[0]) {
				t.Fatalf("480 CSeq %q, INVITE's %q", hdr.Get("Cseq"), want)
			}
		}
		ack := []byte("ACK sip:b SIP/2.0\r\nTo: " + hdr.Get("To") + "\r\n\r\n")
		if !isOfflineACK(ack) {
			t.Fatalf("the ACK of %q is not recognised as ours", resp)
		}
	})
}

// TestOfflineOverWireGuard runs the answer under wireguard-go, which reads
// the INVITE on its TUN goroutine: the 480 reaches the phone well within
// the 2 s issue 3 allows, the peer gets nothing, and once the peer is back
// the same call goes through.
func TestOfflineOverWireGuard(t *testing.T) {
	tuns, devs := wireGuardPairDevices(t)
	devs[0].SetPeerState(false, "offline: no answer from the peer")
	start := time.Now()
	tuns[0].Outbound <- atAlice.fromAlice(inviteTmpl)
	select {
	case got := <-tuns[0].Inbound:
		checkPacket(t, got)
		if status, _ := parseResponse(t, udpPayload(got)); status != "SIP/2.0 480 Peer Offline" || time.Since(start) > 2*time.Second {
			t.Errorf("phone got %q after %v, want a 480 within 2s", status, time.Since(start))
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no answer within 2s")
	}
	select {
	case got := <-tuns[1].Inbound:
		t.Fatalf("the offline peer received %q", got)
	case <-time.After(200 * time.Millisecond):
	}
	devs[0].SetPeerState(true, "")
	tuns[0].Outbound <- atAlice.fromAlice(inviteTmpl)
	select {
	case got := <-tuns[1].Inbound:
		if want := atBob.fromAlice(inviteTmpl); !bytes.Equal(got, want) {
			t.Errorf("peer received\n%q\nwant\n%q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the INVITE did not reach the peer once it was online")
	}
}
