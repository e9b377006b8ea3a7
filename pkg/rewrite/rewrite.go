// Package rewrite maps the addresses of every packet that crosses a peerline
// tunnel between the node's local 10.i.s.p plan and the tunnel's wire plan.
//
// Inside a tunnel addresses are relative to its two ends (docs/design.md §4):
// 10.255.s.p is line s at the sender of a packet and 10.254.s.p is line s at
// its receiver, so two nodes never have to agree on each other's index. Going
// out through tunnel i, 10.0.s.p becomes 10.255.s.p and 10.i.s.p becomes
// 10.254.s.p; coming in, 10.255.s.p becomes 10.i.s.p and 10.254.s.p becomes
// 10.0.s.p (package numplan). Device wraps the TUN of tunnel i's wireguard-go
// device and applies the map to what the device reads (outbound) and writes
// (inbound).
//
// The map is 1:1 and stateless: every phone has an address of its own, so
// ports are never touched (m= ports, RTCP on RTP+1 and symmetric RTP stay as
// the phones made them), there is no connection table, and a restarted daemon
// has nothing to recover. What changes:
//   - the IPv4 source and destination of every packet, with the header
//     checksum and the TCP/UDP pseudo-header checksum updated incrementally
//     (RFC 1624; a UDP checksum of 0, "none", stays 0). This is the RTP path:
//     in place, no allocation.
//   - the header quoted inside ICMP errors (destination unreachable, source
//     quench, time exceeded, parameter problem), so that an error about a
//     packet names the addresses its receiver knows that packet by.
//   - the address literals of SIP messages carried by UDP (package sipmsg),
//     after which the UDP and IP lengths and both checksums are recomputed.
//     Besides the header fields that name a party or a hop, that is the
//     bodies phones read addresses from (issue 15 item 4; sipmsg's "Which
//     bodies" has each rule and why): SDP's o=, c=, a=rtcp:, ICE and
//     a=ssrc (the CNAME) lines, also in a body sent without a
//     Content-Type that starts "v=0"; the dialog-info XML of busy-lamp
//     NOTIFYs (entity, identities, target URIs: BLF and directed pickup
//     across a tunnel need them), but not the dialog's id, call-id and
//     tags, which a pickup's Replaces must match byte for byte; and the
//     message-summary of MWI NOTIFYs (Message-Account). One of those
//     bodies under gzip is dropped and counted (SIPRefused, reason
//     "encoded-body"): it cannot be mapped, and passed on it would point
//     the far phone at its own lines. Other bodies (presence, sipfrag,
//     text) pass as they are.
//     A message can grow or shrink by two bytes per literal, or by a few
//     tens where a URI names a third node's phone (ThirdNodes: the one
//     piece of the map that depends on the node's list of peers, set by the
//     daemon, and rebuilt from its config after a restart).
//
// Packet is stateless and handles one packet. Device adds what needs state,
// per tunnel and direction; the map does not depend on any of it, so a
// restart loses only fragments in flight and call counters:
//   - IPv4 fragments of a UDP datagram whose first fragment is SIP (an INVITE
//     offering many codecs exceeds the tunnel MTU) are reassembled, the
//     message rewritten whole, and the result fragmented again at the MTU;
//     so is an unfragmented message that grows past the MTU.
//   - Towards the peer, the MTU is the tunnel MTU (Device.SetMTU, config's
//     mtu, 1184 by default so that the encrypted datagram fits any path of
//     1280 bytes, ICMP or not), while the TUN and the links from the phone
//     port stay at 1500: every packet a phone sends reaches the Device, and
//     any that exceeds the tunnel MTU, SIP or not, whole or a fragment, Don't
//     Fragment set or not, leaves in fragments the far phone reassembles
//     (device.go fitLocked says why DF is not obeyed). The first INVITE of
//     a desk phone gets through the first time. docs/mtu.md has the
//     choice and its measured cost. Reassembly is
//     bounded (frag.go: datagrams per source and in all, bytes held, a 3 s
//     timeout); fragments of datagrams that are not SIP pass with their
//     addresses mapped as Packet does. Past a limit, a SIP datagram cannot
//     be rewritten: its first fragment is dropped (SIPRefused) if it holds
//     an address the map would change (or, from the peer, one it may not
//     claim), which leaves the rest unable to reassemble; otherwise its
//     fragments pass as they came. Overlapping fragments drop their datagram (as RFC
//     5722 does for IPv6); exact duplicates are ignored.
//   - SIP from the peer that opens something new (a request outside any
//     dialog a local phone is in, a response to a request no local phone
//     sent) is rate-limited (a token bucket, 50 messages/s, burst 100): a
//     scanner cannot flood the phones. Messages of a dialog a local phone
//     is in (BYE, ACK, re-INVITE, the CANCEL of a pending INVITE, their
//     responses) pass that limit, each dialog under a limit of its own, so
//     a flood cannot keep a call from ending. The dialogs are learnt only
//     from what the local phones send, in a bounded table (dialog.go).
//     RTP is never limited.
//   - RTP is measured per flow and direction: packets, loss (RFC 3550 A.1,
//     A.3) and interarrival jitter (A.8), with clock rates from RFC 3551 or
//     the a=rtpmap lines of the SDP it rewrote (Device.Calls).
//   - While the daemon says the peer is offline (Device.SetPeerState), an
//     initial INVITE from a local phone is not sent but answered at once
//     with a 480 written back into the TUN, so the call fails in a moment
//     instead of ringing into a tunnel that goes nowhere (offline.go).
//   - An initial INVITE from the peer whose caller withholds its identity
//     (package privacy) meets the config's anonymous-call rule for that
//     peer (Device.SetAnonymous): under refuse it is answered with a 433,
//     under redirect to line N with a 302 to line N's phone, both built
//     statelessly and sent back through the tunnel by Read, and the phone
//     never sees it (anon.go).
//
// What is passed with its addresses mapped but its payload untouched, and
// counted: SIP over TCP, and SIP messages sipmsg cannot parse (by sipmsg's
// Reason) — except those that still hold an address of our plan, which
// would reach the other node meaning one of its own phones, or an encoded
// body that may hide one: those are dropped (SIPRefused). One function,
// tunnelMap.mustDrop, makes that decision wherever a SIP payload would
// leave unrewritten. TCP is a decision, not a gap: rewriting it changes
// segment lengths, so every later sequence and acknowledgement number of
// the connection would need adjusting (as Linux's nf_nat_sip does through
// conntrack), which is state that a restarted daemon loses mid-call; phones
// are provisioned for SIP over UDP instead, and the firewall (pkg/firewall)
// answers TCP between phones and tunnels with a reset, so no SIP over TCP
// reaches a far phone and a phone set to TCP fails at once rather than
// after its 40 s timeout. SIPOverTCP counts what gets here anyway. Non-IPv4 packets and packets whose IPv4 header is invalid
// pass unchanged. Device counts packets by Result, and what it held or
// dropped by reason (Stats), and logs the first packet of each unusual kind
// only, never a line per packet.
//
// A peer may only appear as its own phones and Pi: Device drops a packet
// from the peer whose wire source is not 10.255.s.p before it reaches the
// TUN, and counts it by reason (Dropped.SourceOurs for a source in our own
// plan, wire 10.254.s.p, which would reach our phones as one of our own
// lines; Dropped.SourceForeign for anything else). The peer namespace's
// firewall checks the same again (pkg/firewall). Inside a SIP message from
// the peer, the same holds for the fields in which the sender names itself
// (From, Contact, Via, P-Asserted-Identity, ...; sipmsg's "Who may be
// named" says which, for requests and responses): a message naming there,
// as mapped for our phones, one of our own lines (10.0.s.p) or another
// node's (10.k.s.p, k not the peer) is dropped and counted
// (Dropped.SIPImpersonation), and so is an inbound message sipmsg cannot
// parse that holds such an address anywhere.
//
// Which datagrams are SIP: every UDP datagram to or from port 5060 except
// keep-alives (blank lines, RFC 5626), and on other ports whatever
// sipmsg.LooksLikeSIP (a loose sniff that also catches a leading blank
// line, a lower-case or long method, a tab or double space, a bracketed or
// non-SIP Request-URI). Each is rewritten, or, if it cannot be and its
// payload holds an address the map would change, dropped as SIPRefused
// (also when its UDP length is wrong, or when the rewritten message does not
// fit): so no SIP datagram leaves with the sender's numbering in a field the
// other node would read. A sample of what was refused is logged, at most
// one line per direction every 10 s (method, reason, size, source).
//
// IPv4, UDP, TCP and ICMP headers are read by hand rather than decoded with
// gopacket: the RTP path runs for every voice packet and must stay far below
// 100 ns without allocating. The tests check every checksum against gopacket.
package rewrite

import (
	"encoding/binary"
	"strconv"

	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/sipmsg"
)

// Result says what Packet did with a packet; Device counts packets by it.
type Result uint8

const (
	// Plain is an IPv4 packet that is not SIP (RTP, RTCP, ICMP, TCP, ...):
	// addresses mapped in place.
	Plain Result = iota
	// SIPRewritten is a UDP SIP message whose addresses changed: the new
	// packet was built in the scratch buffer.
	SIPRewritten
	// SIPUnchanged is a UDP SIP message with nothing to map in it.
	SIPUnchanged
	// SIPUnparsable is a UDP payload that looked like SIP but that sipmsg
	// refused: addresses mapped, payload passed as it was.
	SIPUnparsable
	// SIPTooBig is a SIP message whose rewritten packet does not fit (over
	// 65535 bytes, or larger than the buffer it must go back into):
	// addresses mapped, payload passed as it was.
	SIPTooBig
	// SIPOverTCP is a TCP segment whose payload looks like SIP: addresses
	// mapped, payload passed as it was.
	SIPOverTCP
	// Fragment is an IPv4 fragment: addresses mapped (and, in the first
	// fragment, the transport checksum), payload passed as it was. Device
	// reassembles the fragments of SIP datagrams instead; see Stats.
	Fragment
	// BadTransport is a packet whose TCP, UDP or ICMP header is truncated or
	// disagrees with the IP length: IP addresses mapped, nothing else.
	BadTransport
	// NonIPv4 is passed unchanged.
	NonIPv4
	// Malformed is a packet whose IPv4 header is invalid: passed unchanged.
	Malformed
	// SIPRefused is a UDP SIP message that holds an address of our plan
	// (sipmsg.Mappable) but that cannot be rewritten: sipmsg refused it,
	// its UDP length is wrong, or the result does not fit. Passed on
	// unmapped, the other node would read it as one of its own, so Packet
	// returns it untouched and Device drops it.
	SIPRefused
	// SIPPeerOffline is an initial INVITE from a local phone while the
	// peer is offline: Device answered it with a 480 and did not send it
	// (offline.go). Packet never returns it.
	SIPPeerOffline
	// SIPOfflineACK is the ACK of such a 480: absorbed, not sent. Packet
	// never returns it.
	SIPOfflineACK
	// SIPAnonymousRefused is an initial INVITE from the peer whose caller
	// withholds its identity, refused by the anonymous-call policy: not
	// delivered, answered with a 433 (anon.go). Packet never returns it.
	SIPAnonymousRefused
	// SIPAnonymousRedirected is such an INVITE sent to another line by
	// the policy: not delivered, answered with a 302. Packet never
	// returns it.
	SIPAnonymousRedirected
	// SIPAnonymousACK is the caller's ACK of such a 433 or 302: absorbed.
	SIPAnonymousACK
	// SIPAnswerToPeer is a 433 or 302 the rewriter itself sent to the
	// peer (outbound; a fragment counts once).
	SIPAnswerToPeer

	numResults
)

var resultNames = [numResults]string{
	Plain:          "plain",
	SIPRewritten:   "sip-rewritten",
	SIPUnchanged:   "sip-unchanged",
	SIPUnparsable:  "sip-unparsable",
	SIPTooBig:      "sip-too-big",
	SIPOverTCP:     "sip-over-tcp",
	Fragment:       "fragment",
	BadTransport:   "bad-transport",
	NonIPv4:        "non-ipv4",
	Malformed:      "malformed",
	SIPRefused:     "sip-refused",
	SIPPeerOffline: "sip-peer-offline",
	SIPOfflineACK:  "sip-offline-ack",

	SIPAnonymousRefused:    "sip-anonymous-refused",
	SIPAnonymousRedirected: "sip-anonymous-redirected",
	SIPAnonymousACK:        "sip-anonymous-ack",
	SIPAnswerToPeer:        "sip-answer-to-peer",
}

func (r Result) String() string {
	if r < numResults {
		return resultNames[r]
	}
	return "Result(" + strconv.Itoa(int(r)) + ")"
}

// IPv4 header offsets and protocol numbers.
const (
	ipHeaderLen = 20
	offTotalLen = 2
	offFlags    = 6
	offProto    = 9
	offChecksum = 10
	offSrc      = 12
	offDst      = 16

	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17

	udpHeaderLen    = 8
	offUDPLen       = 4
	offUDPChecksum  = 6
	offTCPChecksum  = 16
	offTCPDataOff   = 12
	icmpHeaderLen   = 8
	offICMPChecksum = 2

	// flagMF and fragOffsetMask together are non-zero for every fragment.
	flagMF         = 0x2000
	fragOffsetMask = 0x1fff

	maxPacket = 0xffff
)

// Packet maps the addresses of the IPv4 packet pkt, which crosses the tunnel
// of peer in direction dir.
//
// out is pkt, rewritten in place, unless res is SIPRewritten: then pkt is
// untouched and out is the new packet, built in scratch[:0] (grown if its
// capacity is too small; pass a 64 KiB buffer to never allocate). Bytes past
// the IP total length are dropped, as wireguard-go does with what it
// receives. Non-IPv4 and malformed packets are returned unchanged, and so
// is a SIPRefused packet, which the caller must not send.
func Packet(scratch, pkt []byte, peer uint8, dir numplan.Direction) (out []byte, res Result) {
	out, res, _ = packet(scratch, pkt, peer, dir, nil)
	return out, res
}

// packet is Packet, and also says why sipmsg refused a message (0 if it
// did not).
// third, if not nil, names the nodes other than the tunnel's two ends.
func packet(scratch, pkt []byte, peer uint8, dir numplan.Direction, third *ThirdNodes) (out []byte, res Result, why sipmsg.Reason) {
	return packetOf(scratch, pkt, peer, dir, third, nil)
}

// parsedSIP is a UDP payload as sipmsg.Parse read it: Device reads each SIP
// datagram once, for the RTP clock table and the rewrite.
type parsedSIP struct {
	msg sipmsg.Message
	err error
}

func parseSIP(payload []byte) (p parsedSIP) {
	p.msg, p.err = sipmsg.Parse(payload)
	return p
}

// packetOf is packet with the UDP payload of pkt already parsed, if sip is
// not nil.
func packetOf(scratch, pkt []byte, peer uint8, dir numplan.Direction, third *ThirdNodes, sip *parsedSIP) (out []byte, res Result, why sipmsg.Reason) {
	pkt, ihl, res := check(pkt)
	if res != Plain {
		return pkt, res, 0
	}
	if isUDPSIP(pkt, ihl) {
		out, res, why := rewriteSIP(scratch, pkt, ihl, tunnelMap{peer, dir, third}, sip)
		switch res {
		case SIPRewritten:
			return out, res, why
		case SIPRefused:
			return pkt, res, why
		}
		if r := mapInPlace(pkt, ihl, peer, dir); r != Plain {
			res = r
		}
		return pkt, res, why
	}
	return pkt, mapInPlace(pkt, ihl, peer, dir), 0
}

// isUDPSIP reports whether a checked packet is an unfragmented UDP datagram
// whose payload looks like SIP.
func isUDPSIP(pkt []byte, ihl int) bool {
	return pkt[offProto] == protoUDP &&
		binary.BigEndian.Uint16(pkt[offFlags:])&(flagMF|fragOffsetMask) == 0 &&
		len(pkt) >= ihl+udpHeaderLen && udpSIP(pkt[ihl:])
}

// mapHeaders is Packet without the SIP path: addresses only, in place.
func mapHeaders(pkt []byte, peer uint8, dir numplan.Direction) ([]byte, Result) {
	pkt, ihl, res := check(pkt)
	if res != Plain {
		return pkt, res
	}
	return pkt, mapInPlace(pkt, ihl, peer, dir)
}

// mapICMPError maps the packet quoted by an ICMP error. The quoted packet
// travelled the other way, but the map is about which node an address belongs
// to, not which way a packet goes, so the same map applies.
func mapICMPError(icmp []byte, peer uint8, dir numplan.Direction) {
	switch icmp[0] {
	case 3, 4, 11, 12: // destination unreachable, source quench, time exceeded, parameter problem
	default:
		return
	}
	in := icmp[icmpHeaderLen:]
	if len(in) < ipHeaderLen || in[0]>>4 != 4 {
		return
	}
	ihl := int(in[0]&0x0f) * 4
	if ihl < ipHeaderLen || len(in) < ihl {
		return
	}
	d, changed := mapAddrs(in[offSrc:offDst+4], peer, dir)
	if !changed {
		return
	}
	// Every word that changes inside the ICMP message also changes the ICMP
	// checksum: the addresses and the quoted checksums.
	sum := d
	sum += adjustChecksum(in[offChecksum:], d)
	if binary.BigEndian.Uint16(in[offFlags:])&fragOffsetMask == 0 {
		tp := in[ihl:]
		switch in[offProto] {
		case protoUDP:
			if len(tp) >= udpHeaderLen {
				sum += adjustUDPChecksum(tp[offUDPChecksum:], d)
			}
		case protoTCP:
			if len(tp) >= offTCPChecksum+2 {
				sum += adjustChecksum(tp[offTCPChecksum:], d)
			}
		}
	}
	adjustChecksum(icmp[offICMPChecksum:], sum)
}

// tunnelMap is the address map of one tunnel and direction, in the form
// sipmsg takes it.
type tunnelMap struct {
	peer  uint8
	dir   numplan.Direction
	third *ThirdNodes
}

func (m tunnelMap) addr(a [4]byte) ([4]byte, bool) { return numplan.Map(a, m.peer, m.dir) }

// names is m.third as a sipmsg.Third: a nil *ThirdNodes in the interface
// would be a non-nil Third.
func (m tunnelMap) names() sipmsg.Third {
	if m.third == nil {
		return nil
	}
	return m.third
}

// mustDrop is the one decision for a SIP payload that is about to leave
// not rewritten (sipmsg refused it, its UDP length is wrong, the result
// would not fit, or its fragments cannot be reassembled): it must be
// dropped if it holds an address this map would change, since the other
// side reads our plan's addresses as its own (a local 10.0.s.p is one of
// its phones there), or a body that can hide one (sipmsg.ErrEncodedBody).
// Anything else passes as it is, harmless.
func (m tunnelMap) mustDrop(payload []byte) bool {
	return sipmsg.MappableThird(payload, m.addr, m.names()) ||
		sipmsg.ReasonOf(sipmsg.Check(payload)) == sipmsg.ErrEncodedBody
}

// rewriteSIP builds the packet with a rewritten SIP payload in scratch.
// SIPRefused means pkt must be dropped; any other result than SIPRewritten
// leaves pkt for mapInPlace. why is sipmsg's reason for refusing the
// message, 0 if it did not. sip is the payload parsed, or nil.
func rewriteSIP(scratch, pkt []byte, ihl int, m tunnelMap, sip *parsedSIP) (_ []byte, _ Result, why sipmsg.Reason) {
	udp := pkt[ihl:]
	hdr := ihl + udpHeaderLen
	if int(binary.BigEndian.Uint16(udp[offUDPLen:])) != len(udp) {
		// Its payload would pass as it is.
		if m.mustDrop(pkt[hdr:]) {
			return nil, SIPRefused, 0
		}
		return nil, BadTransport, 0
	}
	if sip == nil {
		p := parseSIP(pkt[hdr:])
		sip = &p
	}
	out, changed, err := scratch[:0], false, sip.err
	if err == nil {
		out, changed, err = sip.msg.Rewrite(append(out, pkt[:hdr]...), m.addr, m.names())
	}
	if why = sipmsg.ReasonOf(err); why != 0 || !changed || len(out) > maxPacket {
		res := SIPUnchanged
		switch {
		case why != 0:
			res = SIPUnparsable
		case len(out) > maxPacket:
			res = SIPTooBig
		}
		if res != SIPUnchanged && m.mustDrop(pkt[hdr:]) {
			res = SIPRefused
		}
		return nil, res, why
	}
	mapAddrs(out[offSrc:offDst+4], m.peer, m.dir)
	binary.BigEndian.PutUint16(out[offTotalLen:], uint16(len(out)))
	binary.BigEndian.PutUint16(out[offChecksum:], 0)
	binary.BigEndian.PutUint16(out[offChecksum:], ^fold(sum(out[:ihl], 0)))

	u := out[ihl:]
	binary.BigEndian.PutUint16(u[offUDPLen:], uint16(len(u)))
	binary.BigEndian.PutUint16(u[offUDPChecksum:], 0)
	s := sum(out[offSrc:offDst+4], uint32(protoUDP)+uint32(len(u)))
	c := ^fold(sum(u, s))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[offUDPChecksum:], c)
	return out, SIPRewritten, 0
}

// sum adds b to s as big-endian 16-bit words, padding an odd tail with zero.
func sum(b []byte, s uint32) uint32 {
	s64 := uint64(s)
	for len(b) >= 8 {
		s64 += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		s64 += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s64 += uint64(b[0]) << 8
	}
	for s64 > 0xffffffff {
		s64 = s64&0xffffffff + s64>>32
	}
	return uint32(s64)
}

// fold reduces a 32-bit one's-complement sum to 16 bits.
func fold(s uint32) uint16 {
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return uint16(s)
}
