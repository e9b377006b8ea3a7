package rewrite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// linkTUN is a fakeTUN whose MTU is the phone port's, as the supervisor
// sets up a tunnel's TUN: the tunnel MTU is the Device's (SetMTU).
type linkTUN struct {
	*fakeTUN
	mtu int
}

func (l *linkTUN) MTU() (int, error) { return l.mtu, nil }

// tunnelMTU is config.DefaultMTU (this package does not import config).
const tunnelMTU = 1184

// deskPhoneInvite is an INVITE from Alice's phone padded to exactly size
// bytes of IP packet, Don't Fragment set as a phone's kernel sends it.
func deskPhoneInvite(t *testing.T, size int) string {
	t.Helper()
	pad := size - len(atAlice.fromAlice(inviteTmpl))
	tmpl := strings.Replace(inviteTmpl, "User-Agent: baresip v1.0.0", "User-Agent: baresip v1.0.0"+strings.Repeat("x", pad), 1)
	if got := len(atAlice.fromAlice(tmpl)); got != size {
		t.Fatalf("desk-phone INVITE is %d bytes, want %d", got, size)
	}
	return tmpl
}

// TestDeviceDFInviteFitsTunnel reads a full-size (1500-byte) INVITE with
// Don't Fragment set from the TUN, as a desk phone on a 1500-byte port sends
// it (issue 15.3): it must leave for the peer at once, in fragments of at
// most the tunnel MTU, with every address mapped.
func TestDeviceDFInviteFitsTunnel(t *testing.T) {
	for _, size := range []int{1185, 1421, 1500} {
		tmpl := deskPhoneInvite(t, size)
		in := atAlice.fromAlice(tmpl)
		if binary.BigEndian.Uint16(in[6:])&0x4000 == 0 {
			t.Fatal("the test INVITE has no DF")
		}
		d := Wrap(&linkTUN{fakeTUN: newFakeTUN(in), mtu: 1500}, bobAtAlice, nil)
		d.SetMTU(tunnelMTU)
		if m, err := d.MTU(); m != tunnelMTU || err != nil {
			t.Errorf("MTU() = %d, %v, want %d (what WireGuard pads to)", m, err, tunnelMTU)
		}
		out := readAll(t, d, 2)
		want := onWireA.fromAlice(tmpl)
		checkFragments(t, out, tunnelMTU, noDF(want))
		if s := d.Stats().Outbound; s.SIPRewritten != 1 || s.Reassembly.Refragmented != uint64(len(out)) {
			t.Errorf("%d bytes: Stats().Outbound = %+v, want 1 rewritten, %d refragmented", size, s, len(out))
		}
	}
}

// TestDeviceFitsTunnel reads packets other than whole SIP messages that
// exceed the tunnel MTU: each must leave in fragments of at most the tunnel
// MTU that reassemble into the packet as it would have left whole. Packets
// from the peer are never cut here.
func TestDeviceFitsTunnel(t *testing.T) {
	big := bytes.Repeat([]byte{0xa5}, 2972)
	icmp := func(at place) []byte {
		ip := ip4(at.alice, at.bob, layers.IPProtocolICMPv4)
		echo := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1}
		return serialize(ip, echo, gopacket.Payload(bytes.Repeat([]byte{0x5a}, 1400)))
	}
	media := func(n int) func(place) []byte {
		return func(at place) []byte { return udp4(at.alice, at.bob, 10000, 20000, big[:n]) }
	}
	tests := []struct {
		name string
		pkt  func(place) []byte // the packet as the phone meant it, at a place
		frag bool               // the phone fragmented it at 1500
	}{
		{"ping with DF", icmp, false},
		{"UDP media with DF", media(1472), false},
		{"UDP fragmented by the phone at 1500", media(len(big)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := [][]byte{tt.pkt(atAlice)}
			if tt.frag {
				in = fragmentAt(in[0], 1500)
			}
			d := Wrap(&linkTUN{fakeTUN: newFakeTUN(in...), mtu: 1500}, bobAtAlice, nil)
			d.SetMTU(tunnelMTU)
			out := readAll(t, d, 3)
			checkFragments(t, out, tunnelMTU, noDF(tt.pkt(onWireA)))
		})
	}

	t.Run("from the peer", func(t *testing.T) {
		inner := &linkTUN{fakeTUN: newFakeTUN(), mtu: 1500}
		d := Wrap(inner, aliceAtBob, nil)
		d.SetMTU(tunnelMTU)
		pkt := udp4(onWireA.alice, onWireA.bob, 10000, 20000, big[:1400])
		buf := make([]byte, testOffset+len(pkt), 65536)
		copy(buf[testOffset:], pkt)
		if _, err := d.Write([][]byte{buf}, testOffset); err != nil {
			t.Fatal(err)
		}
		if len(inner.written) != 1 || len(inner.written[0]) != len(pkt) {
			t.Errorf("a %d-byte packet from the peer was written as %d packets, want 1 as it came", len(pkt), len(inner.written))
		}
	})
}

// TestSplitterFragment cuts a middle fragment: the pieces start at its
// offset and all of them, the last included, say more fragments follow.
func TestSplitterFragment(t *testing.T) {
	frags := fragmentAt(udp4(atAlice.alice, atAlice.bob, 10000, 20000, bytes.Repeat([]byte{1}, 4000)), 1500)
	mid := frags[1]
	base := binary.BigEndian.Uint16(mid[6:]) & fragOffsetMask
	sp := newSplitter(mid, 600)
	next := int(base) * 8
	var payload []byte
	for k := range sp.n {
		dst := make([]byte, 600)
		n := sp.frag(k, dst)
		f := dst[:n]
		checkIPHeader(t, f)
		fo := binary.BigEndian.Uint16(f[6:])
		if int(fo&fragOffsetMask)*8 != next || fo&flagMF == 0 {
			t.Errorf("piece %d: offset %d MF %v, want offset %d MF true", k, int(fo&fragOffsetMask)*8, fo&flagMF != 0, next)
		}
		next += n - ipHeaderLen
		payload = append(payload, f[ipHeaderLen:]...)
	}
	if !bytes.Equal(payload, mid[ipHeaderLen:]) {
		t.Error("the pieces carry a different payload than the fragment")
	}
}

// BenchmarkDeviceTunnelMTU reads one INVITE of a given size from a phone
// on a 1500-byte port and reports what crosses the tunnel at the old
// tunnel MTU (1420) and the new default (1184): packets and bytes on the
// wire per message, counting WireGuard's 32 bytes and an outer IPv4/UDP
// header per packet (docs/mtu.md).
func BenchmarkDeviceTunnelMTU(b *testing.B) {
	for _, size := range []int{1000, 1300, 1466} {
		pad := size - len(atAlice.fromAlice(inviteTmpl))
		tmpl := strings.Replace(inviteTmpl, "User-Agent: baresip v1.0.0", "User-Agent: baresip v1.0.0"+strings.Repeat("x", pad), 1)
		pkt := atAlice.fromAlice(tmpl)
		for _, mtu := range []int{1420, tunnelMTU} {
			b.Run(fmt.Sprintf("invite %d at %d", size, mtu), func(b *testing.B) {
				d := Wrap(&repeatLinkTUN{repeatTUN: repeatTUN{pkt: pkt}, mtu: 1500}, bobAtAlice, nil)
				d.SetMTU(mtu)
				bufs := make([][]byte, 4)
				for i := range bufs {
					bufs[i] = make([]byte, 2048)
				}
				sizes := make([]int, len(bufs))
				b.SetBytes(int64(len(pkt)))
				b.ReportAllocs()
				var packets, wire int
				for b.Loop() {
					n, _ := d.Read(bufs, sizes, testOffset)
					packets, wire = 0, 0
					for i := range n {
						if sizes[i] > 0 {
							packets++
							wire += sizes[i] + 32 + 8 + 20
						}
					}
				}
				b.ReportMetric(float64(packets), "packets/op")
				b.ReportMetric(float64(wire), "wire-bytes/op")
			})
		}
	}
}

// repeatLinkTUN is repeatTUN on a 1500-byte link, as the supervisor sets up
// a tunnel's TUN.
type repeatLinkTUN struct {
	repeatTUN
	mtu int
}

func (r *repeatLinkTUN) MTU() (int, error) { return r.mtu, nil }

// FuzzDeviceTunnelMTU reads what a phone might send (up to four packets,
// each prefixed by a 2-byte length) at a fuzzed tunnel MTU: nothing may
// panic, and no IPv4 packet that leaves for the peer may exceed the tunnel
// MTU. (What is not IPv4, or is malformed, passes unchanged, and WireGuard
// admits none of it.)
func FuzzDeviceTunnelMTU(f *testing.F) {
	frame := func(pkts ...[]byte) []byte {
		var b []byte
		for _, p := range pkts {
			b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
			b = append(b, p...)
		}
		return b
	}
	invite := atAlice.fromAlice(inviteTmpl)
	big := atAlice.fromAlice(bigInviteTmpl)
	f.Add(frame(invite), uint16(tunnelMTU))
	f.Add(frame(fragmentAt(big, 1500)...), uint16(tunnelMTU))
	f.Add(frame(fragmentAt(big, 1500)...), uint16(600))
	f.Add(frame(udp4(atAlice.alice, atAlice.bob, 10000, 20000, bytes.Repeat([]byte{1}, 1472)), rtpLocalA), uint16(tunnelMTU))
	f.Add(frame(fragmentAt(udp4(atAlice.alice, atAlice.bob, 10000, 20000, bytes.Repeat([]byte{1}, 4000)), 1500)...), uint16(576))
	f.Fuzz(func(t *testing.T, data []byte, mtu uint16) {
		var pkts [][]byte
		for len(data) >= 2 && len(pkts) < 4 {
			n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
			pkts = append(pkts, bytes.Clone(data[2:2+n]))
			data = data[2+n:]
		}
		if len(pkts) == 0 || slices.ContainsFunc(pkts, func(p []byte) bool { return len(p) > 2000 }) {
			return // readAll's buffers hold 2048 bytes, a phone port's frames 1500
		}
		d := Wrap(&linkTUN{fakeTUN: newFakeTUN(pkts...), mtu: 1500}, bobAtAlice, nil)
		d.SetMTU(int(mtu))
		wire, _ := d.MTU()
		for _, out := range readAll(t, d, 3) {
			if _, _, res := check(out); res == Plain && len(out) > wire {
				t.Errorf("a %d-byte IPv4 packet left for the peer, tunnel MTU %d", len(out), wire)
			}
		}
	})
}
