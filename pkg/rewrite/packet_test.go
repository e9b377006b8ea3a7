package rewrite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/peerline/peerline/pkg/numplan"
)

// The two nodes of every test: Alice's node knows Bob's as 7, Bob's node
// knows Alice's as 4.
const (
	bobAtAlice = 7
	aliceAtBob = 4
)

// rtpLocalA is an RTP packet from Alice's phone (line 1) to Bob's line 1, as
// Alice's node reads it from its TUN.
var rtpLocalA = []byte{
	// IPv4
	0x45,       // version 4, IHL 5
	0x00,       // DSCP/ECN
	0x00, 0x2c, // total length 44
	0x1c, 0x46, // identification
	0x40, 0x00, // flags DF, fragment offset 0
	0x40,       // TTL 64
	0x11,       // protocol UDP
	0x08, 0x73, // header checksum
	10, 0, 1, 1, // source 10.0.1.1 (Alice's line 1)
	10, 7, 1, 1, // destination 10.7.1.1 (line 1 at node 7, Bob's)
	// UDP
	0x27, 0x10, // source port 10000
	0x4e, 0x20, // destination port 20000
	0x00, 0x18, // length 24
	0x56, 0x46, // checksum
	// RTP
	0x80, 0x00, // V=2, PT 0 (PCMU)
	0x00, 0x01, // sequence number 1
	0x00, 0x00, 0x00, 0xa0, // timestamp 160
	0xde, 0xad, 0xbe, 0xef, // SSRC
	0xff, 0xff, 0xff, 0xff, // payload: μ-law silence
}

// rtpWire is rtpLocalA inside the tunnel.
var rtpWire = []byte{
	// IPv4
	0x45, 0x00, 0x00, 0x2c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11,
	0x06, 0x7d, // header checksum, updated
	10, 255, 1, 1, // source 10.255.1.1: line 1 at the sender
	10, 254, 1, 1, // destination 10.254.1.1: line 1 at the receiver
	// UDP
	0x27, 0x10, 0x4e, 0x20, 0x00, 0x18,
	0x54, 0x50, // checksum, updated for the pseudo-header
	// RTP, unchanged
	0x80, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0, 0xde, 0xad, 0xbe, 0xef,
	0xff, 0xff, 0xff, 0xff,
}

// rtpLocalB is rtpWire as Bob's node writes it to its TUN.
var rtpLocalB = []byte{
	// IPv4
	0x45, 0x00, 0x00, 0x2c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11,
	0x08, 0x76, // header checksum
	10, 4, 1, 1, // source 10.4.1.1: Alice's line 1 as Bob's node knows it
	10, 0, 1, 1, // destination 10.0.1.1: Bob's line 1
	// UDP
	0x27, 0x10, 0x4e, 0x20, 0x00, 0x18,
	0x56, 0x49, // checksum
	// RTP, unchanged
	0x80, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0, 0xde, 0xad, 0xbe, 0xef,
	0xff, 0xff, 0xff, 0xff,
}

func TestPacketRTP(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		peer uint8
		dir  numplan.Direction
		want []byte
	}{
		{"out at Alice's node", rtpLocalA, bobAtAlice, numplan.Outbound, rtpWire},
		{"in at Bob's node", rtpWire, aliceAtBob, numplan.Inbound, rtpLocalB},
		// The wire form names the sender's side 10.255 whichever way a
		// packet goes, so Bob's reply looks the same as Alice's packet.
		{"Bob's reply out at Bob's node", swapAddrs(rtpLocalB), aliceAtBob, numplan.Outbound, rtpWire},
		{"Bob's reply in at Alice's node", rtpWire, bobAtAlice, numplan.Inbound, swapAddrs(rtpLocalA)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkPacket(t, tt.in)
			pkt := bytes.Clone(tt.in)
			got, res := Packet(nil, pkt, tt.peer, tt.dir)
			if !bytes.Equal(got, tt.want) || res != Plain {
				t.Errorf("Packet(% x) = % x, %v, want % x, %v", tt.in, got, res, tt.want, Plain)
			}
			if &got[0] != &pkt[0] {
				t.Errorf("Packet(% x) did not rewrite in place", tt.in)
			}
			checkPacket(t, got)
		})
	}
}

// swapAddrs returns pkt with its source and destination addresses
// exchanged, as in a reply; checksums do not change.
func swapAddrs(pkt []byte) []byte {
	p := bytes.Clone(pkt)
	copy(p[12:16], pkt[16:20])
	copy(p[16:20], pkt[12:16])
	return p
}

// Call templates: {A} is Alice's address and {B} Bob's as the node holding
// the message writes them; {len} is the body length. Call-ID carries an
// address too, and must never change.
const (
	inviteTmpl = `INVITE sip:bob@{B} SIP/2.0
Via: SIP/2.0/UDP {A}:5060;branch=z9hG4bK-1;rport
Max-Forwards: 70
From: "Alice" <sip:alice@{A}>;tag=a1
To: <sip:bob@{B}>
Call-ID: c1@10.0.1.1
CSeq: 1 INVITE
Contact: <sip:alice@{A}:5060>
User-Agent: baresip v1.0.0
Content-Type: application/sdp
Content-Length: {len}

v=0
o=- 123 456 IN IP4 {A}
s=-
c=IN IP4 {A}
t=0 0
m=audio 10000 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=rtcp:10001 IN IP4 {A}
`
	okTmpl = `SIP/2.0 200 OK
Via: SIP/2.0/UDP {A}:5060;branch=z9hG4bK-1;rport=5060;received={A}
From: "Alice" <sip:alice@{A}>;tag=a1
To: <sip:bob@{B}>;tag=b1
Call-ID: c1@10.0.1.1
CSeq: 1 INVITE
Contact: <sip:bob@{B}:5060>
Content-Type: application/sdp
Content-Length: {len}

v=0
o=- 7 7 IN IP4 {B}
s=-
c=IN IP4 {B}
t=0 0
m=audio 20000 RTP/AVP 0 101
a=rtcp:20001 IN IP4 {B}
`
	// callBackTmpl is Bob calling back the address his phone showed for
	// Alice.
	callBackTmpl = `INVITE sip:alice@{A} SIP/2.0
v: SIP/2.0/UDP {B}:5060;branch=z9hG4bK-2;rport
f: <sip:bob@{B}>;tag=b2
t: <sip:alice@{A}>
i: c2@10.0.2.1
CSeq: 1 INVITE
m: <sip:bob@{B}:5060>
c: application/sdp
l: {len}

v=0
o=- 1 1 IN IP4 {B}
s=-
c=IN IP4 {B}
t=0 0
m=audio 20002 RTP/AVP 0
`
)

// Where Alice (line 1 at her node) and Bob (line 2 at his) are, seen from each
// place a packet can be.
var (
	atAlice = place{alice: "10.0.1.1", bob: "10.7.2.1"}
	onWireA = place{alice: "10.255.1.1", bob: "10.254.2.1"} // sent by Alice's node
	onWireB = place{alice: "10.254.1.1", bob: "10.255.2.1"} // sent by Bob's node
	atBob   = place{alice: "10.4.1.1", bob: "10.0.2.1"}
)

type place struct{ alice, bob string }

// sip renders a template at p with CRLF line endings.
func (p place) sip(tmpl string) []byte {
	s := strings.NewReplacer("{A}", p.alice, "{B}", p.bob, "\n", "\r\n").Replace(tmpl)
	h, body, _ := strings.Cut(s, "\r\n\r\n")
	return []byte(strings.Replace(h, "{len}", strconv.Itoa(len(body)), 1) + "\r\n\r\n" + body)
}

// fromAlice and fromBob build the UDP packet carrying a message at p.
func (p place) fromAlice(tmpl string) []byte {
	return udp4(p.alice, p.bob, 5060, 5060, p.sip(tmpl))
}

func (p place) fromBob(tmpl string) []byte {
	return udp4(p.bob, p.alice, 5060, 5060, p.sip(tmpl))
}

func TestPacketSIP(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		peer uint8
		dir  numplan.Direction
		want []byte
	}{
		{"INVITE out at Alice's node", atAlice.fromAlice(inviteTmpl), bobAtAlice, numplan.Outbound, onWireA.fromAlice(inviteTmpl)},
		{"INVITE in at Bob's node", onWireA.fromAlice(inviteTmpl), aliceAtBob, numplan.Inbound, atBob.fromAlice(inviteTmpl)},
		{"200 OK out at Bob's node", atBob.fromBob(okTmpl), aliceAtBob, numplan.Outbound, onWireB.fromBob(okTmpl)},
		{"200 OK in at Alice's node", onWireB.fromBob(okTmpl), bobAtAlice, numplan.Inbound, atAlice.fromBob(okTmpl)},
		{"call-back out at Bob's node", atBob.fromBob(callBackTmpl), aliceAtBob, numplan.Outbound, onWireB.fromBob(callBackTmpl)},
		{"call-back in at Alice's node", onWireB.fromBob(callBackTmpl), bobAtAlice, numplan.Inbound, atAlice.fromBob(callBackTmpl)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Clone(tt.in)
			got, res := Packet(nil, in, tt.peer, tt.dir)
			if res != SIPRewritten {
				t.Fatalf("Packet(%q) result = %v, want %v", tt.in, res, SIPRewritten)
			}
			if !bytes.Equal(in, tt.in) {
				t.Errorf("Packet(%q) modified its input on the SIP path", tt.in)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("Packet(%q) =\n%q\nwant\n%q", tt.in, got, tt.want)
			}
			checkPacket(t, got)
		})
	}
}

// TestPacketRoundTrip maps packets out at node A (which knows B as i), in at
// B (which knows A as j), then back out at B and in at A, and wants the
// original bytes back.
func TestPacketRoundTrip(t *testing.T) {
	local := place{alice: "10.0.1.1", bob: "10.7.2.1"}
	packets := []struct {
		name string
		pkt  func(i uint8) []byte
	}{
		{"RTP", func(i uint8) []byte { return retarget(rtpLocalA, i) }},
		{"INVITE", func(i uint8) []byte { return local.at(i).fromAlice(inviteTmpl) }},
		{"200 OK", func(i uint8) []byte { return local.at(i).fromBob(okTmpl) }},
		{"call-back", func(i uint8) []byte { return local.at(i).fromBob(callBackTmpl) }},
		{"no UDP checksum", func(i uint8) []byte { return zeroUDPChecksum(retarget(rtpLocalA, i)) }},
		{"TCP", func(i uint8) []byte { return tcp4("10.0.1.1", fmt.Sprintf("10.%d.2.1", i), []byte("hello")) }},
		{"ICMP error", func(i uint8) []byte {
			return icmpUnreachable("10.0.1.1", fmt.Sprintf("10.%d.2.1", i),
				udp4(fmt.Sprintf("10.%d.2.1", i), "10.0.1.1", 20000, 10000, []byte("rtp")))
		}},
	}
	for _, p := range packets {
		for _, ij := range [][2]uint8{{7, 4}, {4, 7}, {1, 1}, {253, 1}, {1, 253}} {
			i, j := ij[0], ij[1]
			t.Run(fmt.Sprintf("%s i=%d j=%d", p.name, i, j), func(t *testing.T) {
				orig := p.pkt(i)
				got := bytes.Clone(orig)
				for _, step := range []struct {
					peer uint8
					dir  numplan.Direction
				}{{i, numplan.Outbound}, {j, numplan.Inbound}, {j, numplan.Outbound}, {i, numplan.Inbound}} {
					got, _ = Packet(nil, got, step.peer, step.dir)
					checkPacket(t, got)
				}
				if !bytes.Equal(got, orig) {
					t.Errorf("round trip of %q = %q", orig, got)
				}
			})
		}
	}
}

// at returns p with Bob's node numbered i.
func (p place) at(i uint8) place {
	a := netip.MustParseAddr(p.bob).As4()
	a[1] = i
	p.bob = netip.AddrFrom4(a).String()
	return p
}

// retarget returns pkt sent to node i, with checksums fixed.
func retarget(pkt []byte, i uint8) []byte {
	p := bytes.Clone(pkt)
	p[17] = i
	return fixChecksums(p)
}

func zeroUDPChecksum(pkt []byte) []byte {
	p := bytes.Clone(pkt)
	ihl := int(p[0]&0x0f) * 4
	p[ihl+6], p[ihl+7] = 0, 0
	return p
}

func TestPacketKeepsZeroUDPChecksum(t *testing.T) {
	in := zeroUDPChecksum(rtpLocalA)
	want := zeroUDPChecksum(rtpWire)
	got, res := Packet(nil, bytes.Clone(in), bobAtAlice, numplan.Outbound)
	if !bytes.Equal(got, want) || res != Plain {
		t.Errorf("Packet(% x) = % x, %v, want % x, %v", in, got, res, want, Plain)
	}
}

func TestPacketPassThrough(t *testing.T) {
	ipv6 := []byte{0x60, 0, 0, 0, 0, 8, 17, 64}
	ipv6 = append(ipv6, make([]byte, 32+8)...)
	badIHL := bytes.Clone(rtpLocalA)
	badIHL[0] = 0x44
	longTotal := bytes.Clone(rtpLocalA)
	longTotal[3]++
	shortTotal := bytes.Clone(rtpLocalA)
	shortTotal[3] = 19
	tests := []struct {
		name string
		in   []byte
		want Result
	}{
		{"empty", nil, NonIPv4},
		{"IPv6", ipv6, NonIPv4},
		{"short IPv4", rtpLocalA[:19], Malformed},
		{"IHL below 5", badIHL, Malformed},
		{"total length past the end", longTotal, Malformed},
		{"total length inside the header", shortTotal, Malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, res := Packet(nil, bytes.Clone(tt.in), bobAtAlice, numplan.Outbound)
			if !bytes.Equal(got, tt.in) || res != tt.want {
				t.Errorf("Packet(% x) = % x, %v, want it unchanged, %v", tt.in, got, res, tt.want)
			}
		})
	}
}

func TestPacketResults(t *testing.T) {
	trailing := append(bytes.Clone(rtpLocalA), 0xaa, 0xbb)
	badUDPLen := bytes.Clone(rtpLocalA)
	badUDPLen[25] = 30
	truncatedUDP := fixIPChecksum(setTotalLen(bytes.Clone(rtpLocalA)[:24]))
	badSIP := udp4("10.0.1.1", "10.7.2.1", 5060, 5060, []byte("INVITE sip:bob@10.7.2.1 SIP/2.0\r\nVia: 10.0.1.1\r\n"))
	badSIPNoMap := udp4("10.0.1.1", "10.7.2.1", 5060, 5060, []byte("INVITE sip:bob@192.0.2.2 SIP/2.0\r\nVia: 192.0.2.1\r\n"))
	noMap := udp4("192.0.2.1", "192.0.2.2", 5060, 5060, place{"192.0.2.1", "192.0.2.2"}.sip(inviteTmpl))
	sipTCP := tcp4("10.0.1.1", "10.7.2.1", atAlice.sip(inviteTmpl))
	tests := []struct {
		name      string
		in        []byte
		want      Result
		wantLen   int
		payloadAt int // if not 0, where the payload that must not change starts
	}{
		{"RTP", rtpLocalA, Plain, len(rtpLocalA), 28},
		{"bytes past the total length are dropped", trailing, Plain, len(rtpLocalA), 28},
		{"UDP length disagrees", badUDPLen, BadTransport, len(rtpLocalA), 28},
		{"UDP header truncated", truncatedUDP, BadTransport, 24, 20},
		// Passed on as it is, it would carry 10.0.1.1 (Alice's phone) into
		// the tunnel, where it names one of Bob's own phones.
		{"unparsable SIP with our addresses", badSIP, SIPRefused, len(badSIP), 28},
		{"unparsable SIP with no address to map", badSIPNoMap, SIPUnparsable, len(badSIPNoMap), 28},
		{"SIP with nothing to map", noMap, SIPUnchanged, len(noMap), 28},
		{"SIP over TCP", sipTCP, SIPOverTCP, len(sipTCP), 40},
		{"ICMP", icmpUnreachable("10.0.1.1", "10.7.1.1", rtpLocalA), Plain, 28 + len(rtpLocalA), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, res := Packet(nil, bytes.Clone(tt.in), bobAtAlice, numplan.Outbound)
			if res != tt.want || len(got) != tt.wantLen {
				t.Errorf("Packet(% x) = %v, %d bytes, want %v, %d bytes", tt.in, res, len(got), tt.want, tt.wantLen)
			}
			if res != BadTransport {
				checkPacket(t, got)
			} else {
				checkIPHeader(t, got)
			}
			if k := tt.payloadAt; k > 0 && len(got) <= len(tt.in) && !bytes.Equal(got[k:], tt.in[k:len(got)]) {
				t.Errorf("Packet(% x) payload = % x, want it unchanged", tt.in, got[k:])
			}
		})
	}
}

func setTotalLen(pkt []byte) []byte {
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	return pkt
}

// TestPacketICMPError checks that the packet quoted in an ICMP error is
// mapped like the packet it quotes: Bob's phone refuses Alice's RTP.
func TestPacketICMPError(t *testing.T) {
	in := icmpUnreachable("10.0.1.1", "10.4.1.1", rtpLocalB)
	// Inside the tunnel the quote is written from the ICMP sender's side:
	// Bob's phone is now at the sender (10.255), Alice's at the receiver.
	wire := icmpUnreachable("10.255.1.1", "10.254.1.1", swapAddrs(rtpWire))
	want := icmpUnreachable("10.7.1.1", "10.0.1.1", rtpLocalA)
	got, res := Packet(nil, bytes.Clone(in), aliceAtBob, numplan.Outbound)
	if !bytes.Equal(got, wire) || res != Plain {
		t.Errorf("Packet(% x) out = % x, %v, want % x, %v", in, got, res, wire, Plain)
	}
	got, res = Packet(nil, got, bobAtAlice, numplan.Inbound)
	if !bytes.Equal(got, want) || res != Plain {
		t.Errorf("Packet(% x) in = % x, %v, want % x, %v", wire, got, res, want, Plain)
	}
	checkPacket(t, got)
	checkPacket(t, got[28:])
}

// TestPacketFragments splits a UDP datagram into fragments, maps each, and
// checks the reassembled datagram: the first fragment's UDP checksum must be
// right for the whole datagram, and the SIP inside is left alone.
func TestPacketFragments(t *testing.T) {
	full := noDF(atAlice.fromAlice(inviteTmpl))
	frags := fragment(full, 128)
	if len(frags) < 3 {
		t.Fatalf("fragment made %d fragments, want at least 3", len(frags))
	}
	var mapped [][]byte
	for k, f := range frags {
		got, res := Packet(nil, bytes.Clone(f), bobAtAlice, numplan.Outbound)
		if res != Fragment {
			t.Errorf("Packet(fragment %d) result = %v, want %v", k, res, Fragment)
		}
		checkIPHeader(t, got)
		if !bytes.Equal(got[20:], f[20:]) && k > 0 {
			t.Errorf("Packet(fragment %d) changed its payload", k)
		}
		mapped = append(mapped, got)
	}
	got := reassemble(mapped)
	// Addresses mapped, SIP left as it was.
	want := noDF(udp4(onWireA.alice, onWireA.bob, 5060, 5060, atAlice.sip(inviteTmpl)))
	if !bytes.Equal(got, want) {
		t.Errorf("reassembled fragments =\n%q\nwant\n%q", got, want)
	}
	checkPacket(t, got)
}

// noDF clears the don't-fragment flag of pkt.
func noDF(pkt []byte) []byte {
	pkt[6] &^= 0x40
	return fixIPChecksum(pkt)
}

// fragment splits an IPv4 packet with a 20-byte header into fragments of at
// most size payload bytes (a multiple of 8).
func fragment(pkt []byte, size int) [][]byte {
	var out [][]byte
	payload := pkt[20:]
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		f := append(bytes.Clone(pkt[:20]), payload[off:end]...)
		flags := uint16(off / 8)
		if end < len(payload) {
			flags |= flagMF
		}
		binary.BigEndian.PutUint16(f[6:], flags)
		out = append(out, fixIPChecksum(setTotalLen(f)))
	}
	return out
}

func reassemble(frags [][]byte) []byte {
	pkt := bytes.Clone(frags[0][:20])
	for _, f := range frags {
		pkt = append(pkt, f[20:]...)
	}
	binary.BigEndian.PutUint16(pkt[6:], 0)
	return fixIPChecksum(setTotalLen(pkt))
}

func fixIPChecksum(pkt []byte) []byte {
	binary.BigEndian.PutUint16(pkt[10:], 0)
	binary.BigEndian.PutUint16(pkt[10:], ^fold(sum(pkt[:20], 0)))
	return pkt
}

// The builders below use gopacket, which computes lengths and checksums
// independently of the code under test.

func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		panic(err)
	}
	return bytes.Clone(buf.Bytes())
}

func ip4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{
		Version: 4, TTL: 64, Id: 0x1c46, Flags: layers.IPv4DontFragment, Protocol: proto,
		SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: netip.MustParseAddr(dst).AsSlice(),
	}
}

func udp4(src, dst string, sport, dport uint16, payload []byte) []byte {
	ip := ip4(src, dst, layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	return serialize(ip, udp, gopacket.Payload(payload))
}

func tcp4(src, dst string, payload []byte) []byte {
	ip := ip4(src, dst, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 5060, Seq: 1, Ack: 1, ACK: true, PSH: true, Window: 512}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	return serialize(ip, tcp, gopacket.Payload(payload))
}

// icmpUnreachable builds the port unreachable that src sends to dst about
// the packet quoted.
func icmpUnreachable(src, dst string, quoted []byte) []byte {
	ip := ip4(src, dst, layers.IPProtocolICMPv4)
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)}
	return serialize(ip, icmp, gopacket.Payload(quoted))
}

// fixChecksums recomputes the IP and transport checksums of pkt.
func fixChecksums(pkt []byte) []byte {
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		_ = udp.SetNetworkLayerForChecksum(ip)
		return serialize(ip, udp, gopacket.Payload(udp.Payload))
	}
	binary.BigEndian.PutUint16(pkt[10:], 0)
	binary.BigEndian.PutUint16(pkt[10:], ^fold(sum(pkt[:int(pkt[0]&0xf)*4], 0)))
	return pkt
}

// checkPacket fails t unless gopacket decodes pkt as IPv4 with UDP, TCP or
// ICMP and, re-serialising it with lengths and checksums computed, gets the
// same bytes.
func checkPacket(t *testing.T, pkt []byte) {
	t.Helper()
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
	ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ok {
		t.Fatalf("gopacket cannot decode % x as IPv4: %v", pkt, p.ErrorLayer())
	}
	ls := []gopacket.SerializableLayer{ip}
	zeroUDP := false
	switch {
	case p.Layer(layers.LayerTypeUDP) != nil:
		udp := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		_ = udp.SetNetworkLayerForChecksum(ip)
		zeroUDP = udp.Checksum == 0
		ls = append(ls, udp, gopacket.Payload(udp.Payload))
	case p.Layer(layers.LayerTypeTCP) != nil:
		tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		_ = tcp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, tcp, gopacket.Payload(tcp.Payload))
	case p.Layer(layers.LayerTypeICMPv4) != nil:
		icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		ls = append(ls, icmp, gopacket.Payload(icmp.Payload))
	default:
		t.Fatalf("gopacket finds no UDP, TCP or ICMP in % x", pkt)
	}
	want := serialize(ls...)
	if zeroUDP {
		ihl := int(want[0]&0x0f) * 4
		want[ihl+6], want[ihl+7] = 0, 0
	}
	if !bytes.Equal(pkt, want) {
		t.Errorf("lengths or checksums wrong in\n% x\nwant\n% x", pkt, want)
	}
}

// checkIPHeader fails t unless the IPv4 header checksum of pkt is right.
func checkIPHeader(t *testing.T, pkt []byte) {
	t.Helper()
	ihl := int(pkt[0]&0x0f) * 4
	if c := fold(sum(pkt[:ihl], 0)); c != 0xffff {
		t.Errorf("IPv4 header checksum of % x wrong (sum %#04x)", pkt[:ihl], c)
	}
}
