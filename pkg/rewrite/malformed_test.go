package rewrite

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/sipmsg"
)

// malformedHeaders follow every start line below: {S} is the sender's
// phone, {R} the receiver's, as the node holding the packet writes them.
const malformedHeaders = "Via: SIP/2.0/UDP {S}:5060;branch=z9hG4bK-m\r\n" +
	"From: <sip:s@{S}>;tag=s1\r\n" +
	"To: <sip:r@{R}>\r\n" +
	"Call-ID: m1@x\r\n" +
	"CSeq: 1 OPTIONS\r\n" +
	"Contact: <sip:s@{S}:5060>\r\n" +
	"Content-Length: 0\r\n\r\n"

// malformedForms are the start lines of issue 15 item 1: forms the old
// sniff (an upper-case method, one space, sip:/sips:/tel:) did not take for
// SIP, so they crossed with the sender's numbering. Those sipmsg parses
// must come out rewritten, the others dropped and counted as not-sip.
var malformedForms = []struct {
	name, start string
	parsed      bool
}{
	{"leading CRLF", "\r\nOPTIONS sip:r@{R} SIP/2.0", false},
	{"leading blank", " OPTIONS sip:r@{R} SIP/2.0", false},
	{"lower-case method", "options sip:r@{R} SIP/2.0", true},
	{"double space", "OPTIONS  sip:r@{R} SIP/2.0", false},
	{"tab", "OPTIONS\tsip:r@{R} SIP/2.0", false},
	{"long method", "AVERYLONGEXTENSIONMETHOD sip:r@{R} SIP/2.0", true},
	{"bracketed Request-URI", "OPTIONS <sip:r@{R}> SIP/2.0", true},
	{"unknown URI scheme", "OPTIONS foo:r@{R} SIP/2.0", true},
	{"lower-case status line", "sip/2.0 200 OK", true},
	{"response behind a blank line", "\r\nSIP/2.0 200 OK", false},
}

type ends struct{ s, r string }

func (e ends) payload(start string) []byte {
	return []byte(strings.NewReplacer("{S}", e.s, "{R}", e.r).Replace(start + "\r\n" + malformedHeaders))
}

// TestMalformedSIP is the golden-packet test of issue 15 item 1, in both
// directions and on the SIP port and others: every form is either rewritten
// (the same bytes with the addresses mapped) or dropped and counted; a
// keep-alive passes.
func TestMalformedSIP(t *testing.T) {
	// Out at Alice's node (Bob is node 7), and in from Bob's.
	outLocal, outWire := ends{"10.0.1.1", "10.7.2.1"}, ends{"10.255.1.1", "10.254.2.1"}
	inWire, inLocal := ends{"10.255.2.1", "10.254.1.1"}, ends{"10.7.2.1", "10.0.1.1"}
	type dirCase struct {
		name      string
		read      bool
		from, to  ends
		sport, dp uint16
	}
	var dirs []dirCase
	for _, ports := range [][2]uint16{{5060, 5060}, {5062, 5080}} {
		dirs = append(dirs,
			dirCase{fmt.Sprintf("out %d>%d", ports[0], ports[1]), true, outLocal, outWire, ports[0], ports[1]},
			dirCase{fmt.Sprintf("in %d>%d", ports[0], ports[1]), false, inWire, inLocal, ports[0], ports[1]})
	}
	for _, form := range malformedForms {
		for _, dc := range dirs {
			t.Run(form.name+" "+dc.name, func(t *testing.T) {
				pkt := udp4(dc.from.s, dc.from.r, dc.sport, dc.dp, dc.from.payload(form.start))
				sent, c := throughDevice(t, pkt, dc.read)
				if !form.parsed {
					if len(sent) != 0 {
						t.Fatalf("sent %q, want it dropped", sent)
					}
					if c.SIPRefused != 1 || c.SIPRefusals["not-sip"] != 1 {
						t.Errorf("counts %+v, want SIPRefused 1 (not-sip)", c)
					}
					return
				}
				want := udp4(dc.to.s, dc.to.r, dc.sport, dc.dp, dc.to.payload(form.start))
				if len(sent) != 1 || !bytes.Equal(sent[0], want) {
					t.Fatalf("sent %q\nwant %q", sent, want)
				}
				checkPacket(t, sent[0])
				if c.SIPRewritten != 1 {
					t.Errorf("counts %+v, want SIPRewritten 1", c)
				}
			})
		}
	}
	// What the SIP port carries besides SIP.
	others := []struct {
		name    string
		payload string
		sent    bool
		res     Result
	}{
		{"CRLF keep-alive", "\r\n\r\n", true, Plain},
		{"empty datagram", "", true, Plain},
		{"text with an address of ours", "hello 10.0.1.1\r\n", false, SIPRefused},
		{"text without addresses", "hello\r\n", true, SIPUnparsable},
	}
	for _, o := range others {
		t.Run(o.name, func(t *testing.T) {
			pkt := udp4("10.0.1.1", "10.7.2.1", 5060, 5060, []byte(o.payload))
			sent, c := throughDevice(t, pkt, true)
			if (len(sent) == 1) != o.sent {
				t.Fatalf("sent %q, want sent=%v", sent, o.sent)
			}
			if c.get(o.res) != 1 {
				t.Errorf("counts %+v, want one %v", c, o.res)
			}
			if o.sent && !bytes.Equal(udpPayload(sent[0]), []byte(o.payload)) {
				t.Errorf("payload became %q", udpPayload(sent[0]))
			}
		})
	}
}

// throughDevice reads pkt from a local phone (read) or writes it from the
// wire through a Device of Alice's tunnel to Bob, and returns what came out
// and the counts of that direction.
func throughDevice(t *testing.T, pkt []byte, read bool) ([][]byte, Counts) {
	t.Helper()
	inner := newFakeTUN()
	d := Wrap(inner, bobAtAlice, nil)
	if read {
		inner.toRead = [][]byte{pkt}
		return readOnce(t, d, 1), d.Stats().Outbound
	}
	buf := make([]byte, len(pkt), len(pkt)+512)
	copy(buf, pkt)
	if _, err := d.Write([][]byte{buf}, 0); err != nil {
		t.Fatal(err)
	}
	return inner.written, d.Stats().Inbound
}

// TestDeviceWriteDropsImpersonation is issue 13 item 4, the part inside
// the message: a peer whose packets come from its own phones can still
// name one of ours in From, Contact or P-Asserted-Identity, and our phone
// would show the call as coming from its neighbour line. Such messages are
// dropped and counted; the legitimate uses of our addresses pass.
func TestDeviceWriteDropsImpersonation(t *testing.T) {
	// Bob's line 2 sends to Alice's line 1; 10.254.2.1 on the wire is
	// Alice's own line 2.
	const hdrs = "Via: SIP/2.0/UDP 10.255.2.1:5060;branch=z9hG4bK-1\r\n" +
		"To: <sip:alice@10.254.1.1>\r\nCall-ID: x@y\r\nCSeq: 1 INVITE\r\n"
	req := func(start, extra string) []byte {
		return udp4("10.255.2.1", "10.254.1.1", 5060, 5060, []byte(start+"\r\n"+hdrs+extra+"Content-Length: 0\r\n\r\n"))
	}
	invite := "INVITE sip:alice@10.254.1.1 SIP/2.0"
	tests := []struct {
		name string
		pkt  []byte
		pass bool
	}{
		{"INVITE from Bob", req(invite, "From: <sip:bob@10.255.2.1>;tag=1\r\nContact: <sip:bob@10.255.2.1>\r\n"), true},
		{"From our line 2 (issue 13)", req(invite, "From: \"Mum (line 2)\" <sip:10.254.2.1>;tag=1\r\nContact: <sip:bob@10.255.2.1>\r\n"), false},
		{"From our line 2, written in our own numbering", req(invite, "From: <sip:10.0.2.1>;tag=1\r\n"), false},
		{"Contact at our line 2", req(invite, "From: <sip:bob@10.255.2.1>;tag=1\r\nm: <sip:10.254.2.1>\r\n"), false},
		{"P-Asserted-Identity of our Pi", req(invite, "From: <sip:bob@10.255.2.1>;tag=1\r\nP-Asserted-Identity: <sip:10.254.1.2>\r\n"), false},
		// A literal of a node Alice knows becomes its wire name (which
		// names nothing at her phones); of one she does not, it stays.
		{"From a node we do not know", req(invite, "From: <sip:dave@10.12.1.1>;tag=1\r\n"), false},
		{"From a third node, by its wire name", req(invite, "From: <sip:carol@"+thirdWireName(t, 1, 1)+">;tag=1\r\n"), false},
		{"From outside the plan", req(invite, "From: <sip:bob@192.0.2.7>;tag=1\r\n"), true},
		{"transfer to a third node's phone", req("REFER sip:alice@10.254.1.1 SIP/2.0", "From: <sip:bob@10.255.2.1>;tag=1\r\nRefer-To: <sip:10.9.1.1>\r\n"), true},
		{"transfer of our line 1 to our line 2", req("REFER sip:alice@10.254.1.1 SIP/2.0", "From: <sip:bob@10.255.2.1>;tag=1\r\nRefer-To: <sip:10.254.2.1>\r\n"), true},
		{"call to our line 2 referred by our line 1", req("INVITE sip:10.254.2.1 SIP/2.0", "From: <sip:bob@10.255.2.1>;tag=1\r\nReferred-By: <sip:10.254.1.1>\r\n"), true},
		{"302 to our line 2", udp4("10.255.2.1", "10.254.1.1", 5060, 5060, []byte("SIP/2.0 302 Moved\r\n"+
			"Via: SIP/2.0/UDP 10.254.1.1:5060;branch=z9hG4bK-1\r\nFrom: <sip:alice@10.254.1.1>;tag=a\r\nTo: <sip:bob@10.255.2.1>;tag=b\r\n"+
			"Call-ID: x@y\r\nCSeq: 1 INVITE\r\nContact: <sip:10.254.2.1>\r\nContent-Length: 0\r\n\r\n")), true},
		{"200 with Contact at our line 2", udp4("10.255.2.1", "10.254.1.1", 5060, 5060, []byte("SIP/2.0 200 OK\r\n"+
			"Via: SIP/2.0/UDP 10.254.1.1:5060;branch=z9hG4bK-1\r\nFrom: <sip:alice@10.254.1.1>;tag=a\r\nTo: <sip:bob@10.255.2.1>;tag=b\r\n"+
			"Call-ID: x@y\r\nCSeq: 1 INVITE\r\nContact: <sip:10.254.2.1>\r\nContent-Length: 0\r\n\r\n")), false},
		{"unparsable, our address anywhere", udp4("10.255.2.1", "10.254.1.1", 5060, 5060, []byte("INVITE sip:alice@x SIP/2.0\r\nFrom: <sip:10.0.2.1>\r\n")), false},
		{"unparsable, no address of ours", udp4("10.255.2.1", "10.254.1.1", 5060, 5060, []byte("INVITE sip:alice@x SIP/2.0\r\nFrom: <sip:bob@x>\r\n")), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log strings.Builder
			inner := newFakeTUN()
			d := Wrap(inner, bobAtAlice, newTestLogger(&log))
			d.SetThirdNodes(aliceThirds())
			buf := make([]byte, len(tt.pkt), len(tt.pkt)+512)
			copy(buf, tt.pkt)
			if _, err := d.Write([][]byte{buf}, 0); err != nil {
				t.Fatal(err)
			}
			if got := len(inner.written) == 1; got != tt.pass {
				t.Fatalf("passed = %v, want %v", got, tt.pass)
			}
			c := d.Stats().Inbound
			if tt.pass {
				if c.Dropped.SIPImpersonation != 0 {
					t.Errorf("Dropped.SIPImpersonation = %d, want 0", c.Dropped.SIPImpersonation)
				}
				return
			}
			if c.Dropped.SIPImpersonation != 1 || c.Packets != 0 {
				t.Errorf("counts %+v, want Dropped.SIPImpersonation 1 and no packet counted", c)
			}
			for _, s := range []string{"refused a SIP message", "dir=inbound", "reason=impersonation:", "source=10.7.2.1", "size=" + fmt.Sprint(len(tt.pkt))} {
				if !strings.Contains(log.String(), s) {
					t.Errorf("log lacks %q:\n%s", s, log.String())
				}
			}
		})
	}
}

// TestRefusalSampleRateLimited: a flood of refused messages gives one log
// line per sampleEvery, with what an operator needs to tell a buggy phone
// from an attack; all of them are counted.
func TestRefusalSampleRateLimited(t *testing.T) {
	var log strings.Builder
	var clock testClock
	inner := newFakeTUN()
	d := Wrap(inner, bobAtAlice, newTestLogger(&log))
	d.clock = clock.now
	bad := udp4("10.255.2.1", "10.254.1.1", 5060, 5060, []byte("INVITE sip:alice@10.254.1.1 SIP/2.0\r\nFrom: <sip:10.254.2.1>;tag=1\r\nContent-Length: 0\r\n\r\n"))
	for range 60 {
		clock.t += 1e9 / 4 // 15 s in all
		buf := bytes.Clone(bad)
		if _, err := d.Write([][]byte{buf}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(log.String(), "refused a SIP message"); n != 2 {
		t.Errorf("%d samples in 15 s of refusals, want 2 (one per %v s):\n%s", n, sampleEvery/1e9, log.String())
	}
	if !strings.Contains(log.String(), "method=INVITE") {
		t.Errorf("the sample lacks the method:\n%s", log.String())
	}
	if got := d.Stats().Inbound.Dropped.SIPImpersonation; got != 60 {
		t.Errorf("Dropped.SIPImpersonation = %d, want 60", got)
	}
}

// leavesNoPlanAddress is the property of issue 15 item 1 for one packet
// that left a Device in direction dir of tunnel peer: if it is a UDP
// datagram the rewriter treats as SIP (udpSIP), no address literal of the
// sender's numbering, i.e. one the map of that direction would change,
// is left in a field the rewriter maps (a parsable message maps to itself
// again), and an unparsable one holds none anywhere; nor (issue 15 item 4)
// in a body the rewriter reads, checked independently by bodyLeak, and a
// readable body under gzip never leaves. Inbound, the message also names
// none of our lines where the peer may only name itself.
// Outside the mapped fields (Call-ID, Warning, ...) literals stay on
// purpose (sipmsg's doc), so the property cannot be "none anywhere".
func leavesNoPlanAddress(t *testing.T, p []byte, peer uint8, dir numplan.Direction) {
	t.Helper()
	if len(p) < ipHeaderLen || p[0]>>4 != 4 || p[offProto] != protoUDP {
		return
	}
	ihl := int(p[0]&0x0f) * 4
	if len(p) < ihl+udpHeaderLen || binary.BigEndian.Uint16(p[offFlags:])&(flagMF|fragOffsetMask) != 0 || !udpSIP(p[ihl:]) {
		return
	}
	m := p[ihl+udpHeaderLen:]
	mapAddr := func(a [4]byte) ([4]byte, bool) { return numplan.Map(a, peer, dir) }
	out, changed, err := sipmsg.Rewrite(nil, m, mapAddr)
	switch {
	case err == nil && changed:
		t.Fatalf("a %v message left with addresses still to map:\n%q\nwould become\n%q", dir, m, out)
	case err != nil && sipmsg.Mappable(m, mapAddr):
		t.Fatalf("an unparsable %v message left with addresses still to map (%v):\n%q", dir, err, m)
	}
	if leak := bodyLeak(m, mapAddr); leak != "" {
		t.Fatalf("a %v message left with its body in the sender's numbering: %s:\n%q", dir, leak, m)
	}
	if dir != numplan.Inbound {
		return
	}
	if err == nil {
		if f, bad := sipmsg.Impersonation(m, notPeer(peer)); bad {
			t.Fatalf("a message from the peer names our line in %s:\n%q", f, m)
		}
	} else if sipmsg.HasAddr(m, notPeer(peer)) {
		t.Fatalf("an unparsable message from the peer holds our address:\n%q", m)
	}
}

// FuzzNoPlanAddressLeaves sends a fuzzed UDP payload, between fuzzed
// addresses of the plan and ports, through a Device in both directions,
// and checks leavesNoPlanAddress on everything that comes out.
func FuzzNoPlanAddressLeaves(f *testing.F) {
	local, wire := ends{"10.0.1.1", "10.7.2.1"}, ends{"10.255.2.1", "10.254.1.1"}
	for _, form := range malformedForms {
		f.Add(local.payload(form.start), uint16(5060), uint16(5060), uint8(0), uint8(7))
		f.Add(wire.payload(form.start), uint16(5062), uint16(7078), uint8(255), uint8(254))
	}
	f.Add(atAlice.sip(inviteTmpl), uint16(5060), uint16(5060), uint8(0), uint8(7))
	f.Add(onWireB.sip(okTmpl), uint16(5060), uint16(5060), uint8(255), uint8(254))
	f.Add([]byte("\r\n\r\n"), uint16(5060), uint16(5060), uint8(0), uint8(7))
	for _, tmpl := range []string{blfNotifyTmpl, mwiNotifyTmpl, ssrcInviteTmpl, noTypeOKTmpl} {
		f.Add(bodyTrips[0].atSender.render(tmpl), uint16(5060), uint16(5060), uint8(0), uint8(7))
		f.Add(bodyTrips[1].wire.render(tmpl), uint16(5060), uint16(5060), uint8(255), uint8(254))
	}
	f.Add([]byte("NOTIFY sip:w@10.7.2.1 SIP/2.0\r\nc: application/dialog-info+xml\r\ne: gzip\r\nl: 24\r\n\r\n<x entity='sip:10.0.1.1'>"), uint16(5060), uint16(5060), uint8(0), uint8(7))
	f.Add([]byte("INVITE sip:a@10.254.1.1 SIP/2.0\r\nFrom: <sip:10.254.2.1>;tag=1\r\nContent-Length: 0\r\n\r\n"), uint16(5060), uint16(5060), uint8(255), uint8(254))
	f.Fuzz(func(t *testing.T, payload []byte, sport, dport uint16, srcNet, dstNet uint8) {
		if len(payload) > 4000 {
			return
		}
		const peer = bobAtAlice
		for _, dir := range []numplan.Direction{numplan.Outbound, numplan.Inbound} {
			src := fmt.Sprintf("10.%d.1.1", srcNet)
			if dir == numplan.Inbound {
				src = "10.255.1.1" // anything else is dropped on its source
			}
			pkt := udp4(src, fmt.Sprintf("10.%d.2.1", dstNet), sport, dport, payload)
			inner := newFakeTUN()
			d := Wrap(inner, peer, nil)
			var sent [][]byte
			if dir == numplan.Outbound {
				inner.toRead = [][]byte{pkt}
				bufs := [][]byte{make([]byte, 1<<16), make([]byte, 1<<16), make([]byte, 1<<16), make([]byte, 1<<16)}
				sizes := make([]int, len(bufs))
				n, _ := d.Read(bufs, sizes, 0)
				for k := range n {
					if sizes[k] > 0 {
						sent = append(sent, bufs[k][:sizes[k]])
					}
				}
			} else {
				buf := make([]byte, len(pkt), 1<<16)
				copy(buf, pkt)
				if _, err := d.Write([][]byte{buf}, 0); err != nil {
					t.Fatal(err)
				}
				sent = inner.written
			}
			if len(sent) > 1 {
				sent = [][]byte{reassemble(sent)}
			}
			for _, p := range sent {
				leavesNoPlanAddress(t, p, peer, dir)
			}
		}
	})
}

// TestStatsJSONNames pins the names status.json shows for the refusals of
// this file: the daemon writes Stats as JSON as it is.
func TestStatsJSONNames(t *testing.T) {
	inner := newFakeTUN()
	d := Wrap(inner, bobAtAlice, nil)
	for _, p := range [][]byte{
		udp4("10.255.2.1", "10.254.1.1", 5060, 5060, []byte("INVITE sip:a@10.254.1.1 SIP/2.0\r\nFrom: <sip:10.254.2.1>;tag=1\r\nContent-Length: 0\r\n\r\n")),
		udp4("10.255.2.1", "10.254.1.1", 5060, 5060, []byte("\r\nINVITE sip:a@10.254.1.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n")),
	} {
		if _, err := d.Write([][]byte{p}, 0); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(d.Stats())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"SIPImpersonation":1`, `"SIPRefused":1`, `"SIPRefusals":{"not-sip":1}`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("Stats as JSON lacks %s:\n%s", s, b)
		}
	}
}

// aliceThirds is what Alice's node knows: Bob is node 7, Carol node 9.
func aliceThirds() *ThirdNodes {
	return NewThirdNodes(aliceKey, bobKey, map[int]nodekey.Key{bobAtAlice: bobKey, 9: carolKey})
}

// thirdWireName is the wire name of Carol's line s, host p, in the tunnel
// between Alice and Bob.
func thirdWireName(t *testing.T, s, p uint8) string {
	tag, ok := aliceThirds().WireTag([4]byte{10, 9, s, p})
	if !ok {
		t.Fatal("no wire name for Carol's node")
	}
	return string(sipmsg.AppendWireName(nil, s, p, tag))
}

// TestOverLimitSIPFragments: past the reassembly limits a SIP message
// cannot be rewritten, so its first fragment passes as it came only if it
// holds nothing the rule forbids; otherwise it is dropped and the rest of
// the datagram, unable to reassemble, reaches no phone.
func TestOverLimitSIPFragments(t *testing.T) {
	// Bob's node sends to Alice's line 1: wire source 10.255.2.1.
	msg := func(from string) []byte {
		body := strings.Repeat("a=x-padding:0123456789abcdef0123456789abcdef\r\n", 40)
		m := "MESSAGE sip:alice@pbx.example SIP/2.0\r\nVia: SIP/2.0/UDP host.example;branch=z9hG4bK-f\r\n" +
			"From: <sip:" + from + ">;tag=1\r\nTo: <sip:alice@pbx.example>\r\nCall-ID: f@x\r\nCSeq: 1 MESSAGE\r\n" +
			"Content-Type: text/plain\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body
		return udp4("10.255.2.1", "10.254.1.1", 5060, 5060, []byte(m))
	}
	tests := []struct {
		name string
		pkt  []byte
		pass bool
		want Counts
	}{
		{"no address of the plan: passes as it came", msg("bob@host.example"), true,
			Counts{Packets: 1, Fragments: 1, Reassembly: ReassemblyCounts{Held: maxPerSource, OverLimit: 1}}},
		{"a wire address: refused", msg("bob@10.255.2.1"), false,
			Counts{Packets: 1, SIPRefused: 1, Reassembly: ReassemblyCounts{Held: maxPerSource, OverLimit: 1}}},
		{"our own line: impersonation", msg("mum@10.0.2.1"), false,
			Counts{Reassembly: ReassemblyCounts{Held: maxPerSource, OverLimit: 1}, Dropped: DropCounts{SIPImpersonation: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := newFakeTUN()
			d := Wrap(inner, bobAtAlice, nil)
			d.clock = func() int64 { return 0 }
			first := fragmentAt(tt.pkt, 1420)[0]
			// Fill the source's reassembly slots with other datagrams'
			// first fragments, then send this one.
			for id := range uint16(maxPerSource + 1) {
				p := bytes.Clone(first)
				binary.BigEndian.PutUint16(p[4:], 1000+id)
				buf := make([]byte, len(p), 2048)
				copy(buf, fixIPChecksum(p))
				if _, err := d.Write([][]byte{buf}, 0); err != nil {
					t.Fatal(err)
				}
			}
			if got := len(inner.written) == 1; got != tt.pass {
				t.Errorf("passed = %v, want %v", got, tt.pass)
			}
			got := d.Stats().Inbound
			got.SIPRefusals = nil
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Stats().Inbound = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
