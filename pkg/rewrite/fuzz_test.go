package rewrite

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/sipmsg"
)

func FuzzRewritePacket(f *testing.F) {
	seeds := [][]byte{
		rtpLocalA, rtpWire, rtpLocalB, zeroUDPChecksum(rtpLocalA),
		atAlice.fromAlice(inviteTmpl), onWireA.fromAlice(inviteTmpl),
		atBob.fromBob(okTmpl), onWireB.fromBob(okTmpl),
		atBob.fromBob(callBackTmpl), onWireB.fromBob(callBackTmpl),
		tcp4("10.0.1.1", "10.7.2.1", atAlice.sip(inviteTmpl)),
		icmpUnreachable("10.0.1.1", "10.7.1.1", rtpLocalA),
		{0x60, 0, 0, 0},
		// Alice's phone transfers Bob's to Carol's, node 1 at Alice's.
		udp4("10.0.1.1", "10.7.1.1", 5060, 5060, []byte(strings.ReplaceAll(referFromBob, "10.5.1.1", "10.1.1.1"))),
	}
	seeds = append(seeds, fragment(noDF(atAlice.fromAlice(inviteTmpl)), 128)...)
	seeds = append(seeds, frag3()...)
	seeds = append(seeds, atAlice.fromAlice(bigInviteTmpl), noDF(atAlice.fromAlice(bigInviteTmpl)))
	for _, tmpl := range []string{blfNotifyTmpl, mwiNotifyTmpl, ssrcInviteTmpl, noTypeOKTmpl} {
		seeds = append(seeds, bodyTrips[0].atSender.packet(tmpl), bodyTrips[1].wire.packet(tmpl))
	}
	for _, s := range seeds {
		f.Add(s, uint8(bobAtAlice), uint8(aliceAtBob))
	}
	scratch := make([]byte, 0, 1<<16)
	f.Fuzz(func(t *testing.T, pkt []byte, i, j uint8) {
		// Keep valid indices as they are, so the seeds' 7 and 4 stay.
		if !numplan.ValidNode(int(i)) {
			i = 1 + i%numplan.MaxNode
		}
		if !numplan.ValidNode(int(j)) {
			j = 1 + j%numplan.MaxNode
		}
		// Carol's node is a third node both ends know: Alice numbers it
		// kA, Bob kB; both differ from i and j so that an unmapped 10.kA
		// never reads as either end at either node.
		kA, kB := thirdIndex(i, j), thirdIndex(j, i)
		thirdA := NewThirdNodes(aliceKey, bobKey, map[int]nodekey.Key{int(i): bobKey, int(kA): carolKey})
		thirdB := NewThirdNodes(bobKey, aliceKey, map[int]nodekey.Key{int(j): aliceKey, int(kB): carolKey})
		orig := bytes.Clone(pkt)
		out, res, _ := packet(scratch, bytes.Clone(pkt), i, numplan.Outbound, thirdA)
		checkResult(t, orig, out, res)

		// Out at A, in at B, out at B, in at A gives back the input when
		// every address in it belongs to A's view (10.0 or 10.i), and, if SIP
		// was rebuilt, its checksums were right to begin with. A step that
		// refuses the packet (SIPRefused) ends the trip: Device drops it.
		rebuilt, refused := res == SIPRewritten, res == SIPRefused
		got := out
		for _, step := range []struct {
			peer  uint8
			dir   numplan.Direction
			third *ThirdNodes
		}{{j, numplan.Inbound, thirdB}, {j, numplan.Outbound, thirdB}, {i, numplan.Inbound, thirdA}} {
			if refused {
				break
			}
			prev := bytes.Clone(got)
			got, res, _ = packet(scratch, got, step.peer, step.dir, step.third)
			checkResult(t, prev, got, res)
			rebuilt, refused = rebuilt || res == SIPRewritten, res == SIPRefused
			got = bytes.Clone(got) // scratch is reused by the next step
		}
		if r := orig; len(r) >= ipHeaderLen && r[0]>>4 == 4 {
			// Packet drops what lies past the total length of a valid header.
			ihl, total := int(r[0]&0xf)*4, int(binary.BigEndian.Uint16(r[offTotalLen:]))
			if ihl >= ipHeaderLen && total >= ihl && total <= len(r) {
				orig = r[:total]
			}
		}
		// A wire name already in the input would come back as a literal.
		roundTrips := !refused && ownAddrsOnly(orig, i, kA) && (!rebuilt || checksumsValid(orig)) &&
			!bytes.Contains(orig, []byte(sipmsg.WireNameSuffix))
		if roundTrips && !bytes.Equal(got, orig) {
			t.Fatalf("round trip through i=%d j=%d of\n%q\ngave\n%q", i, j, orig, got)
		}
		fuzzDevices(t, orig, i, j, roundTrips)
	})
}

// thirdIndex is the first node index that is neither i nor j.
func thirdIndex(i, j uint8) uint8 {
	k := uint8(numplan.MinNode)
	for k == i || k == j {
		k++
	}
	return k
}

// fuzzDevices sends a UDP datagram, cut into fragments of a size taken from
// it, through the Devices of the round trip above: Alice's node reads it,
// Bob's writes it, reads it back, and Alice's writes it. Every packet that
// comes out must have a valid IP header, total length and fragment fields,
// and, when Packet's round trip holds, the fragments that reach Alice's
// phone must reassemble to the datagram it sent.
func fuzzDevices(t *testing.T, orig []byte, i, j uint8, roundTrips bool) {
	if len(orig) < ipHeaderLen+udpHeaderLen || orig[0] != 0x45 || orig[offProto] != protoUDP ||
		int(binary.BigEndian.Uint16(orig[offTotalLen:])) != len(orig) ||
		binary.BigEndian.Uint16(orig[offFlags:])&^0x4000 != 0 || !ipHeaderValid(orig) {
		return
	}
	size := 8 * (1 + int(orig[len(orig)-1])%200)
	in := fragment(noDF(bytes.Clone(orig)), size)
	if len(in) > 2*maxFragsPerDatagram {
		return // keeps each run short; up to here the per-datagram limit is crossed
	}
	var clock testClock
	hop := func(pkts [][]byte, peer uint8, read bool) [][]byte {
		inner := newFakeTUN()
		d := Wrap(inner, peer, nil)
		d.clock = clock.now
		var out [][]byte
		if read {
			inner.toRead = pkts
			bufs := make([][]byte, 3)
			for k := range bufs {
				bufs[k] = make([]byte, 1<<16)
			}
			sizes := make([]int, len(bufs))
			for range 10 * len(pkts) {
				n, err := d.Read(bufs, sizes, 0)
				for k := range n {
					if sizes[k] > 0 {
						out = append(out, bytes.Clone(bufs[k][:sizes[k]]))
					}
				}
				if err != nil && d.dirs[outbound].npending.Load() == 0 {
					break
				}
			}
		} else {
			for _, p := range pkts {
				buf := make([]byte, len(p), len(p)+256)
				copy(buf, p)
				if _, err := d.Write([][]byte{buf}, 0); err != nil {
					t.Fatal(err)
				}
			}
			out = inner.written
		}
		for _, p := range out {
			if !ipHeaderValid(p) || int(binary.BigEndian.Uint16(p[offTotalLen:])) != len(p) {
				t.Fatalf("Device made a packet with a bad IP header or length: %q", p)
			}
			if fo := binary.BigEndian.Uint16(p[offFlags:]); fo&flagMF != 0 && (len(p)-ipHeaderLen)%8 != 0 {
				t.Fatalf("Device made a middle fragment of %d payload bytes", len(p)-ipHeaderLen)
			}
			// A message naming the receiver's own lines as its sender is
			// dropped on purpose (TestDeviceWriteDropsImpersonation).
			s := d.Stats()
			s.Inbound.Dropped.SIPImpersonation = 0
			if s.Outbound.Dropped != (DropCounts{}) || s.Inbound.Dropped != (DropCounts{}) {
				t.Fatalf("Device dropped fragments of one datagram: %+v", s)
			}
		}
		return out
	}
	got := hop(hop(hop(hop(in, i, true), j, false), j, true), i, false)
	if !roundTrips || len(got) == 0 {
		return
	}
	slices.SortFunc(got, func(a, b []byte) int {
		return int(binary.BigEndian.Uint16(a[offFlags:])&fragOffsetMask) - int(binary.BigEndian.Uint16(b[offFlags:])&fragOffsetMask)
	})
	want := noDF(bytes.Clone(orig))
	if len(got) == 1 && binary.BigEndian.Uint16(got[0][offFlags:])&(flagMF|fragOffsetMask) == 0 {
		// Small enough to leave whole after reassembly.
		if !bytes.Equal(got[0], want) {
			t.Fatalf("round trip of %q through Devices gave %q", want, got[0])
		}
		return
	}
	if r := reassemble(got); !bytes.Equal(r, want) {
		t.Fatalf("round trip of %q through Devices gave fragments reassembling to %q", want, r)
	}
}

// checkResult checks the properties every result of Packet(in) must have.
func checkResult(t *testing.T, in, out []byte, res Result) {
	t.Helper()
	switch res {
	case NonIPv4, Malformed:
		if !bytes.Equal(out, in) {
			t.Fatalf("Packet(%q) = %q, %v, want it unchanged", in, out, res)
		}
		return
	case SIPRefused:
		// Untouched (less bytes past the total length), and only ever a
		// message sipmsg refuses that holds an address of some plan.
		ihl := int(out[0]&0xf) * 4
		p := out[ihl+udpHeaderLen:]
		if !bytes.Equal(out, in[:len(out)]) {
			t.Fatalf("Packet(%q) = %q, %v, want it unchanged", in, out, res)
		}
		// A UDP length that disagrees with the IP length refuses it too:
		// its payload would pass unrewritten.
		udpLenOK := int(binary.BigEndian.Uint16(out[ihl+offUDPLen:])) == len(out)-ihl
		if _, _, err := sipmsg.Rewrite(nil, p, func(a [4]byte) ([4]byte, bool) { return a, false }); err == nil && udpLenOK {
			t.Fatalf("Packet(%q) = %v, but sipmsg parses its payload", in, res)
		}
		if !bytes.Contains(p, []byte("10.")) {
			t.Fatalf("Packet(%q) = %v without a 10/8 address in its payload", in, res)
		}
		return
	case SIPRewritten:
		ihl := int(out[0]&0xf) * 4
		if int(binary.BigEndian.Uint16(out[offTotalLen:])) != len(out) ||
			int(binary.BigEndian.Uint16(out[ihl+offUDPLen:])) != len(out)-ihl {
			t.Fatalf("Packet(%q) = %q, lengths wrong", in, out)
		}
		if !checksumsValid(out) {
			t.Fatalf("Packet(%q) = %q, checksums wrong", in, out)
		}
		payload := out[ihl+udpHeaderLen:]
		if n, bodyStart, ok := contentLength(payload); ok {
			if n0, b0, ok := contentLength(in[ihl+udpHeaderLen:]); ok && n0 == len(in)-ihl-udpHeaderLen-b0 && n != len(payload)-bodyStart {
				t.Fatalf("Packet(%q) = %q, Content-Length %d, body %d bytes", in, out, n, len(payload)-bodyStart)
			}
		}
		return
	}
	// Rewritten in place: same length (less bytes past the IP total length),
	// and every checksum that was right still is.
	if len(out) > len(in) || !bytes.Equal(out[:9], in[:9]) {
		t.Fatalf("Packet(%q) = %q, %v: header changed beyond addresses and checksums", in, out, res)
	}
	if ipHeaderValid(in) && !ipHeaderValid(out) {
		t.Fatalf("Packet(%q) = %q, %v: broke the IP header checksum", in, out, res)
	}
	if checksumsValid(in[:len(out)]) && !checksumsValid(out) {
		t.Fatalf("Packet(%q) = %q, %v: broke a checksum", in, out, res)
	}
}

// ownAddrsOnly reports whether every 10/8 address in pkt that the map could
// touch, in binary or as text, is 10.0.x.x or 10.i.x.x: others are not in A's
// plan and do not come back the same (a third node's 10.k.s.p arrives at B as
// its own 10.k.s.p, which is someone else there).
func ownAddrsOnly(pkt []byte, i, third uint8) bool {
	own := func(b byte) bool { return b == 0 || b == i || b == third }
	if len(pkt) >= ipHeaderLen {
		for _, a := range [][]byte{pkt[offSrc:], pkt[offDst:]} {
			if a[0] == 10 && !own(a[1]) {
				return false
			}
		}
		ihl := int(pkt[0]&0xf) * 4
		if q := ihl + icmpHeaderLen; pkt[offProto] == protoICMP && len(pkt) >= q+ipHeaderLen {
			for _, a := range [][]byte{pkt[q+offSrc:], pkt[q+offDst:]} {
				if a[0] == 10 && !own(a[1]) {
					return false
				}
			}
		}
	}
	// Any "10.<n>" in text with n not 0 or i, however it is bounded.
	for k := 0; k+3 < len(pkt); k++ {
		if pkt[k] != '1' || pkt[k+1] != '0' || pkt[k+2] != '.' || (k > 0 && isDigitOrDot(pkt[k-1])) {
			continue
		}
		n, m := 0, k+3
		for m < len(pkt) && m < k+7 && '0' <= pkt[m] && pkt[m] <= '9' {
			n = n*10 + int(pkt[m]-'0')
			m++
		}
		if m > k+3 && (n > 255 || !own(byte(n))) {
			return false
		}
	}
	return true
}

func isDigitOrDot(c byte) bool { return c == '.' || '0' <= c && c <= '9' }

// The checksum helpers below are written out again, simply, rather than
// calling the code under test.

func onesSum(b []byte) uint32 {
	var s uint32
	for k := 0; k+1 < len(b); k += 2 {
		s += uint32(b[k])<<8 | uint32(b[k+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return s
}

func ipHeaderValid(pkt []byte) bool {
	if len(pkt) < ipHeaderLen {
		return false
	}
	ihl := int(pkt[0]&0xf) * 4
	return ihl >= ipHeaderLen && len(pkt) >= ihl && onesSum(pkt[:ihl]) == 0xffff
}

// checksumsValid reports whether pkt is an IPv4 packet with a valid header
// checksum and, if it is a whole UDP, TCP or ICMP packet, a valid transport
// checksum (a UDP checksum of 0 is not valid here: Packet may compute one).
func checksumsValid(pkt []byte) bool {
	if !ipHeaderValid(pkt) {
		return false
	}
	ihl := int(pkt[0]&0xf) * 4
	if int(binary.BigEndian.Uint16(pkt[offTotalLen:])) != len(pkt) ||
		binary.BigEndian.Uint16(pkt[offFlags:])&(flagMF|fragOffsetMask) != 0 {
		return true
	}
	tp := pkt[ihl:]
	pseudo := onesSum(pkt[offSrc:offDst+4]) + uint32(pkt[offProto]) + uint32(len(tp))
	switch pkt[offProto] {
	case protoUDP:
		if len(tp) < udpHeaderLen || int(binary.BigEndian.Uint16(tp[offUDPLen:])) != len(tp) {
			return true
		}
		if binary.BigEndian.Uint16(tp[offUDPChecksum:]) == 0 {
			return false
		}
		return fold(pseudo+onesSum(tp)) == 0xffff
	case protoTCP:
		return len(tp) < 20 || fold(pseudo+onesSum(tp)) == 0xffff
	case protoICMP:
		return fold(onesSum(tp)) == 0xffff
	}
	return true
}

// contentLength returns a SIP message's Content-Length and where its body
// starts, parsed the simple way.
func contentLength(msg []byte) (n, bodyStart int, ok bool) {
	for k := 0; k < len(msg); {
		e := bytes.IndexByte(msg[k:], '\n')
		if e < 0 {
			return 0, 0, false
		}
		line := bytes.TrimSuffix(msg[k:k+e], []byte("\r"))
		k += e + 1
		if len(line) == 0 {
			return n, k, ok
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		name = bytes.ToLower(bytes.TrimSpace(name))
		if found && (string(name) == "content-length" || string(name) == "l") {
			n, ok = 0, true
			v := bytes.TrimSpace(value)
			if len(v) == 0 || len(v) > 9 {
				ok = false
			}
			for _, c := range v {
				if c < '0' || c > '9' {
					ok = false
				}
				n = n*10 + int(c-'0')
			}
		}
	}
	return 0, 0, false
}

func BenchmarkRTP(b *testing.B) {
	pkt := bytes.Clone(rtpLocalA)
	dir := numplan.Outbound
	b.ReportAllocs()
	for b.Loop() {
		// Mapping out and back in by turns keeps every iteration's
		// addresses mappable, so each one does the full work.
		if _, res := Packet(nil, pkt, bobAtAlice, dir); res != Plain {
			b.Fatalf("Packet(RTP) = %v", res)
		}
		dir ^= 1
	}
}

func BenchmarkSIPInvite(b *testing.B) {
	pkt := atAlice.fromAlice(inviteTmpl)
	scratch := make([]byte, 0, 1<<16)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, res := Packet(scratch, pkt, bobAtAlice, numplan.Outbound); res != SIPRewritten {
			b.Fatalf("Packet(INVITE) = %v", res)
		}
	}
}
