package rewrite

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/peerline/peerline/pkg/numplan"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// bigInviteTmpl is an INVITE as a desk phone with many codecs and a long
// Allow/Supported list sends it: about 3.3 kB, three fragments at a 1500-byte
// MTU and three again at the tunnel's 1420.
var bigInviteTmpl = func() string {
	var b strings.Builder
	b.WriteString(`INVITE sip:bob@{B}:5060;transport=udp SIP/2.0
Via: SIP/2.0/UDP {A}:5060;branch=z9hG4bK-big1;rport
Max-Forwards: 70
From: "Alice Example, Accounts Department, Second Floor" <sip:alice@{A}:5060>;tag=big-a1
To: <sip:bob@{B}:5060>
Call-ID: big-call-1@10.0.1.1
CSeq: 20 INVITE
Contact: <sip:alice@{A}:5060;transport=udp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000000000001>"
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, SUBSCRIBE, PRACK, UPDATE, MESSAGE, PUBLISH
Supported: replaces, timer, path, gruu, 100rel, norefersub, from-change, histinfo, outbound
Session-Expires: 1800;refresher=uac
Min-SE: 90
User-Agent: Example Desk Phone 1234 firmware 10.0.0.12345 (build 2026-01-01) with a long agent string
P-Preferred-Identity: "Alice" <sip:alice@{A}>
Content-Type: application/sdp
Content-Length: {len}

v=0
o=- 1700000000 1700000000 IN IP4 {A}
s=Example Desk Phone Session
c=IN IP4 {A}
t=0 0
m=audio 11780 RTP/AVP 9 0 8 18 96 97 98 99 100 102 103 104 105 106 107 108 109 110 111 101
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:96 opus/48000/2
a=fmtp:96 maxplaybackrate=48000;sprop-maxcapturerate=48000;maxaveragebitrate=64000;useinbandfec=1
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp:11781 IN IP4 {A}
a=sendrecv
a=ptime:20
`)
	for pt := 97; pt <= 111; pt++ {
		if pt == 101 {
			continue
		}
		fmt.Fprintf(&b, "a=rtpmap:%d L16/%d\na=fmtp:%d a-long-format-parameter-list-to-fill-the-message=%d;another-parameter=%d;and-one-more-for-good-measure=yes\n", pt, 16000, pt, pt, pt*3)
	}
	b.WriteString("m=video 11782 RTP/AVP 34\nc=IN IP4 {A}\na=rtpmap:34 H263/90000\n")
	return b.String()
}()

// fragmentAt splits pkt at an MTU the way a sender does, clearing DF.
func fragmentAt(pkt []byte, mtu int) [][]byte {
	return fragment(noDF(bytes.Clone(pkt)), (mtu-ipHeaderLen)&^7)
}

func writePcap(t *testing.T, path string, pkts [][]byte) {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65536, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for k, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(k) * time.Millisecond), CaptureLength: len(p), Length: len(p)}
		if err := w.WritePacket(ci, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readPcap(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var pkts [][]byte
	for {
		p, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		pkts = append(pkts, bytes.Clone(p))
	}
	return pkts
}

// golden compares got with the packets of testdata/name, or writes them
// there with -update.
func golden(t *testing.T, name string, got [][]byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		writePcap(t, path, got)
	}
	want := readPcap(t, path)
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("packets differ from %s (-update rewrites it):\ngot  %q\nwant %q", path, got, want)
	}
}

// readAll reads from d until the inner device is exhausted and pending
// fragments are out, with batches of batch buffers.
func readAll(t *testing.T, d *Device, batch int) [][]byte {
	t.Helper()
	var out [][]byte
	for range 100 {
		bufs := make([][]byte, batch)
		for i := range bufs {
			bufs[i] = make([]byte, testOffset+2048)
		}
		sizes := make([]int, batch)
		n, err := d.Read(bufs, sizes, testOffset)
		for i := range n {
			if sizes[i] > 0 {
				out = append(out, bytes.Clone(bufs[i][testOffset:testOffset+sizes[i]]))
			}
		}
		if err != nil && d.dirs[outbound].npending.Load() == 0 {
			return out
		}
	}
	t.Fatal("Read never ran dry")
	return nil
}

// TestDeviceFragmentedInvite sends a 3-fragment INVITE from Alice's phone
// through her node (Read) and Bob's (Write): each node must reassemble it,
// rewrite the SIP, and send it on in fragments that fit its MTU.
func TestDeviceFragmentedInvite(t *testing.T) {
	local := atAlice.fromAlice(bigInviteTmpl)
	in := fragmentAt(local, 1500)
	if len(in) != 3 {
		t.Fatalf("the INVITE (%d bytes) makes %d fragments at MTU 1500, want 3", len(local), len(in))
	}
	if *update {
		writePcap(t, filepath.Join("testdata", "invite-3frag.pcap"), in)
	}
	in = readPcap(t, filepath.Join("testdata", "invite-3frag.pcap"))
	wantWire := onWireA.fromAlice(bigInviteTmpl)
	wantBob := atBob.fromAlice(bigInviteTmpl)

	for _, batch := range []int{1, 3, 4, 8} {
		t.Run(fmt.Sprintf("batch %d", batch), func(t *testing.T) {
			alice := Wrap(newFakeTUN(in...), bobAtAlice, nil)
			wire := readAll(t, alice, batch)
			checkFragments(t, wire, 1420, noDF(bytes.Clone(wantWire)))
			if batch == 4 {
				golden(t, "invite-3frag.wire.golden.pcap", wire)
			}
			s := alice.Stats().Outbound
			if s.Reassembly.Held != 3 || s.Reassembly.Datagrams != 1 || s.SIPRewritten != 1 || s.Reassembly.Refragmented != uint64(len(wire)) {
				t.Errorf("Stats().Outbound = %+v, want 3 held, 1 datagram rewritten, %d refragmented", s, len(wire))
			}

			// Bob's node gets the fragments in reverse order, one Write
			// each, as a reordering network delivers them.
			inner := newFakeTUN()
			bob := Wrap(inner, aliceAtBob, nil)
			for _, f := range slices.Backward(wire) {
				buf := make([]byte, testOffset+len(f), 65536)
				copy(buf[testOffset:], f)
				if _, err := bob.Write([][]byte{buf}, testOffset); err != nil {
					t.Fatalf("Write() error %v", err)
				}
			}
			checkFragments(t, inner.written, 1420, noDF(bytes.Clone(wantBob)))
			if batch == 4 {
				golden(t, "invite-3frag.bob.golden.pcap", inner.written)
			}
		})
	}
}

// checkFragments checks that frags are valid fragments of at most mtu bytes
// that together are want.
func checkFragments(t *testing.T, frags [][]byte, mtu int, want []byte) {
	t.Helper()
	if len(frags) < 2 {
		t.Fatalf("got %d packets, want fragments", len(frags))
	}
	sorted := slices.Clone(frags)
	slices.SortFunc(sorted, func(a, b []byte) int {
		return int(binary.BigEndian.Uint16(a[6:])&fragOffsetMask) - int(binary.BigEndian.Uint16(b[6:])&fragOffsetMask)
	})
	next := 0
	for k, f := range sorted {
		checkIPHeader(t, f)
		fo := binary.BigEndian.Uint16(f[6:])
		if len(f) > mtu || int(binary.BigEndian.Uint16(f[2:])) != len(f) {
			t.Errorf("fragment %d: %d bytes, total length %d, MTU %d", k, len(f), binary.BigEndian.Uint16(f[2:]), mtu)
		}
		if fo&0x4000 != 0 {
			t.Errorf("fragment %d has DF set", k)
		}
		if more, last := fo&flagMF != 0, k == len(sorted)-1; more == last {
			t.Errorf("fragment %d of %d: MF = %v", k, len(sorted), more)
		}
		if int(fo&fragOffsetMask)*8 != next {
			t.Errorf("fragment %d at offset %d, want %d", k, int(fo&fragOffsetMask)*8, next)
		}
		next += len(f) - 20
	}
	got := reassemble(sorted)
	if !bytes.Equal(got, want) {
		t.Errorf("reassembled fragments =\n%q\nwant\n%q", got, want)
	}
	checkPacket(t, got)
}

// frag3 is the 3-fragment INVITE at Alice's node, fragmented at 1500.
func frag3() [][]byte { return fragmentAt(atAlice.fromAlice(bigInviteTmpl), 1500) }

// TestReassembler writes fragments as they arrive from the wire at Bob's
// node.
func TestReassembler(t *testing.T) {
	f := fragmentAt(onWireA.fromAlice(bigInviteTmpl), 1500)
	notSIP := fragmentAt(udp4(onWireA.alice, onWireA.bob, 10000, 20000, bytes.Repeat([]byte{0x80}, 3000)), 1500)
	ping := fragmentAt(icmpUnreachable(onWireA.alice, onWireA.bob, make([]byte, 2000)), 1500)
	overlap := bytes.Clone(f[1])
	binary.BigEndian.PutUint16(overlap[6:], flagMF|(1480-8)/8)
	fixIPChecksum(overlap)
	pastEnd := bytes.Clone(f[2])
	binary.BigEndian.PutUint16(pastEnd[6:], 8190)
	fixIPChecksum(pastEnd)
	oddMiddle := bytes.Clone(f[1][:len(f[1])-3])
	fixIPChecksum(setTotalLen(oddMiddle))
	otherID := func(p []byte, id uint16) []byte {
		p = bytes.Clone(p)
		binary.BigEndian.PutUint16(p[4:], id)
		return fixIPChecksum(p)
	}
	type step struct {
		pkt   []byte
		after time.Duration // since the start
	}
	tests := []struct {
		name  string
		steps []step
		// wantOut is how many packets leave, and wantWhole whether one of
		// them is the rewritten, reassembled INVITE.
		wantOut   int
		wantWhole bool
		want      Counts
	}{
		{"in order", []step{{f[0], 0}, {f[1], 0}, {f[2], 0}}, 3, true,
			Counts{Packets: 1, SIPRewritten: 1, Reassembly: ReassemblyCounts{Held: 3, Datagrams: 1, Refragmented: 3}}},
		{"reverse order", []step{{f[2], 0}, {f[1], 0}, {f[0], 0}}, 3, true,
			Counts{Packets: 1, SIPRewritten: 1, Reassembly: ReassemblyCounts{Held: 3, Datagrams: 1, Refragmented: 3}}},
		{"duplicate fragment", []step{{f[0], 0}, {f[0], 0}, {f[1], 0}, {f[2], 0}}, 3, true,
			Counts{Packets: 1, SIPRewritten: 1, Reassembly: ReassemblyCounts{Held: 3, Datagrams: 1, Refragmented: 3, Duplicates: 1}}},
		{"overlap drops the datagram", []step{{f[0], 0}, {overlap, 0}, {f[1], 0}, {f[2], 0}}, 0, false,
			Counts{Reassembly: ReassemblyCounts{Held: 1}, Dropped: DropCounts{FragmentOverlap: 4}}},
		{"past 64 KiB", []step{{f[0], 0}, {pastEnd, 0}}, 0, false,
			Counts{Reassembly: ReassemblyCounts{Held: 1}, Dropped: DropCounts{FragmentTooBig: 2}}},
		{"timeout", []step{{f[0], 0}, {f[1], 0}, {f[2], 4 * time.Second}}, 0, false,
			Counts{Reassembly: ReassemblyCounts{Held: 3}, Dropped: DropCounts{FragmentTimeout: 2}}},
		{"not SIP passes as it came", []step{{notSIP[1], 0}, {notSIP[0], 0}, {notSIP[2], 0}}, 3, false,
			Counts{Packets: 3, Fragments: 3, Reassembly: ReassemblyCounts{Held: 1}}},
		{"ICMP fragments pass", []step{{ping[0], 0}, {ping[1], 0}}, 2, false,
			Counts{Packets: 2, Fragments: 2}},
		{"middle fragment not a multiple of 8 passes", []step{{oddMiddle, 0}}, 1, false,
			Counts{Packets: 1, Fragments: 1}},
		// Past a limit, a SIP message cannot be rewritten; passed as it
		// came, it would carry wire addresses to the phone (issue 15).
		{"per-source limit: SIP with plan addresses is refused", func() []step {
			var s []step
			for id := range uint16(maxPerSource + 1) {
				s = append(s, step{otherID(f[0], id), 0})
			}
			return s
		}(), 0, false, Counts{Packets: 1, SIPRefused: 1, Reassembly: ReassemblyCounts{Held: maxPerSource, OverLimit: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := newFakeTUN()
			d := Wrap(inner, aliceAtBob, nil)
			var clock time.Duration
			d.clock = func() int64 { return int64(clock) }
			for _, s := range tt.steps {
				clock = s.after
				buf := make([]byte, len(s.pkt), 65536)
				copy(buf, s.pkt)
				if _, err := d.Write([][]byte{buf}, 0); err != nil {
					t.Fatalf("Write() error %v", err)
				}
			}
			if got := d.Stats().Inbound; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Stats().Inbound = %+v\nwant %+v", got, tt.want)
			}
			if len(inner.written) != tt.wantOut {
				t.Errorf("%d packets written, want %d", len(inner.written), tt.wantOut)
			}
			for _, p := range inner.written {
				checkIPHeader(t, p)
			}
			if tt.wantWhole {
				checkFragments(t, inner.written, 1420, noDF(atBob.fromAlice(bigInviteTmpl)))
			}
		})
	}
}

// TestReassemblerMemoryCap fills the reassembler to its byte limit with
// middle fragments of large datagrams: the fragments past it pass with their
// addresses mapped, none is dropped.
func TestReassemblerMemoryCap(t *testing.T) {
	var ev [numEvents]atomic.Uint64
	r := &reassembler{ev: &ev}
	var held, passed, total int
	for src := range byte(8) {
		for k := 1; k < 40; k++ {
			p := udp4(fmt.Sprintf("10.255.%d.1", src+1), "10.254.2.1", 5060, 5060, make([]byte, 1480-8))
			p[6], p[7] = byte((flagMF|k*185)>>8), byte(k*185)
			total++
			v, dg := r.add(fixIPChecksum(p), ipHeaderLen, 0)
			switch v {
			case fragHeld:
				held++
			case fragPass:
				passed++
			case fragPassAll:
				held -= len(dg.pieces)
				passed += 1 + len(dg.pieces)
				r.release(dg)
			default:
				t.Fatalf("add() = %v, want held or passed", v)
			}
			if r.held > maxHeldBytes {
				t.Fatalf("reassembler holds %d bytes, limit %d", r.held, maxHeldBytes)
			}
		}
	}
	if passed == 0 || held+passed != total || held*1500 > maxHeldBytes {
		t.Errorf("held %d, passed %d of %d fragments, want the limit to pass some", held, passed, total)
	}
	if n := ev[evFragOverLimit].Load(); n == 0 {
		t.Errorf("no fragment counted over the limit")
	}
}

func TestSplitter(t *testing.T) {
	withOpts := func(opts ...byte) []byte {
		p := atAlice.fromAlice(bigInviteTmpl)
		h := append(bytes.Clone(p[:20]), opts...)
		h[0] = 0x40 | byte(len(h)/4)
		p = append(h, p[20:]...)
		return fixIPChecksum(setTotalLen(noDF(p)))
	}
	// Record route (7, not copied) and a security-like option (0x82,
	// copied), then padding.
	opts := withOpts(1, 7, 7, 4, 0, 0, 0, 0, 0x82, 4, 0xaa, 0xbb)
	tests := []struct {
		name     string
		pkt      []byte
		mtu      int
		wantN    int
		wantOpts []byte // options in fragments after the first
	}{
		{"fits", rtpLocalA, 1420, 1, nil},
		{"INVITE at 1420", atAlice.fromAlice(bigInviteTmpl), 1420, 3, nil},
		{"INVITE at 576", atAlice.fromAlice(bigInviteTmpl), 576, 7, nil},
		{"INVITE at the IPv4 minimum", atAlice.fromAlice(bigInviteTmpl), 10, 0, nil},
		{"options: only copied ones repeat", opts, 1420, 3, []byte{0x82, 4, 0xaa, 0xbb}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSplitter(tt.pkt, tt.mtu)
			if tt.wantN != 0 && s.n != tt.wantN {
				t.Errorf("newSplitter(%d bytes, MTU %d).n = %d, want %d", len(tt.pkt), tt.mtu, s.n, tt.wantN)
			}
			mtu := max(tt.mtu, minMTU)
			var frags [][]byte
			for k := range s.n {
				buf := make([]byte, mtu)
				frags = append(frags, buf[:s.frag(k, buf)])
			}
			if s.n == 1 {
				if !bytes.Equal(frags[0][20:], tt.pkt[20:]) {
					t.Errorf("one fragment changed the payload")
				}
				return
			}
			ihl := int(tt.pkt[0]&0xf) * 4
			if !bytes.Equal(frags[0][:ihl][12:], tt.pkt[12:ihl]) {
				t.Errorf("first fragment header % x, want the original's options", frags[0][:ihl])
			}
			for _, f := range frags[1:] {
				if got := f[20 : int(f[0]&0xf)*4]; !bytes.Equal(got, tt.wantOpts) {
					t.Errorf("later fragment options % x, want % x", got, tt.wantOpts)
				}
			}
			// Reassemble by hand, ignoring header sizes.
			var payload []byte
			for _, f := range frags {
				checkIPHeader(t, f)
				if len(f) > mtu {
					t.Errorf("fragment of %d bytes, MTU %d", len(f), mtu)
				}
				off := int(binary.BigEndian.Uint16(f[6:])&fragOffsetMask) * 8
				if off != len(payload) {
					t.Fatalf("fragment at %d, want %d", off, len(payload))
				}
				payload = append(payload, f[int(f[0]&0xf)*4:]...)
			}
			if !bytes.Equal(payload, tt.pkt[ihl:]) {
				t.Errorf("fragments carry a different payload")
			}
		})
	}
}

// TestDeviceRefragmentsGrownSIP sends an unfragmented SIP message that
// grows past the MTU when rewritten: it leaves as two fragments.
func TestDeviceRefragmentsGrownSIP(t *testing.T) {
	// Pad the INVITE so that on the wire it is a few bytes over 1420.
	base := atAlice.fromAlice(inviteTmpl)
	grow := len(onWireA.fromAlice(inviteTmpl)) - len(base)
	pad := 1420 - len(base) - grow + 2
	tmpl := strings.Replace(inviteTmpl, "User-Agent: baresip v1.0.0", "User-Agent: baresip v1.0.0"+strings.Repeat("x", pad), 1)
	in := atAlice.fromAlice(tmpl)
	if len(in) > 1420 {
		t.Fatalf("input %d bytes, want at most the MTU", len(in))
	}
	d := Wrap(newFakeTUN(in), bobAtAlice, nil)
	out := readAll(t, d, 2)
	want := onWireA.fromAlice(tmpl)
	want[6] &^= 0x40 // fragments: DF cleared
	checkFragments(t, out, 1420, fixIPChecksum(want))
}

// TestDeviceSIPFlood floods SIP from the peer: after the burst, SIP is
// limited to the rate, RTP passes throughout, drops are counted.
func TestDeviceSIPFlood(t *testing.T) {
	inner := newFakeTUN()
	d := Wrap(inner, bobAtAlice, nil)
	var clock time.Duration
	d.clock = func() int64 { return int64(clock) }
	sip := onWireB.fromBob(okTmpl)
	write := func(p []byte) {
		buf := make([]byte, len(p), 4096)
		copy(buf, p)
		if _, err := d.Write([][]byte{buf}, 0); err != nil {
			t.Fatalf("Write() error %v", err)
		}
	}
	for range 3 * sipBurst {
		write(sip)
		write(rtpWire)
	}
	clock = time.Second
	for range sipRate * 2 {
		write(sip)
	}
	s := d.Stats().Inbound
	want := Counts{
		Packets: sipBurst + sipRate + 3*sipBurst, SIPRewritten: sipBurst + sipRate, Plain: 3 * sipBurst,
		Dropped: DropCounts{SIPFlood: 2*sipBurst + sipRate},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Stats().Inbound = %+v\nwant %+v", s, want)
	}
	if got := len(inner.written); got != int(want.Packets) {
		t.Errorf("%d packets written, want %d", got, want.Packets)
	}
}

// TestDeviceOverWireGuardFragments sends the fragmented INVITE through two
// real wireguard-go devices, whose batch size is 1: every fragment must
// arrive, through the pending queue.
func TestDeviceOverWireGuardFragments(t *testing.T) {
	tuns := wireGuardPair(t)
	for _, f := range frag3() {
		tuns[0].Outbound <- f
	}
	var got [][]byte
	for len(got) < 3 {
		select {
		case p := <-tuns[1].Inbound:
			got = append(got, p)
		case <-time.After(10 * time.Second):
			t.Fatalf("received %d fragments within 10s, want 3", len(got))
		}
	}
	checkFragments(t, got, 1420, noDF(atBob.fromAlice(bigInviteTmpl)))
}

func TestPacketFragmentsUnchangedByPacket(t *testing.T) {
	// Packet itself stays stateless: a fragment handed to it alone is
	// mapped and reported, as before Device learnt to reassemble.
	for k, f := range frag3() {
		got, res := Packet(nil, bytes.Clone(f), bobAtAlice, numplan.Outbound)
		if res != Fragment {
			t.Errorf("Packet(fragment %d) = %v, want %v", k, res, Fragment)
		}
		checkIPHeader(t, got)
	}
}

// TestDeviceReadMixedBatch reads RTP and fragments in one batch: the RTP is
// mapped in place wherever it sits, the fragments leave rewritten, and every
// slot the caller reads is either a packet or empty.
func TestDeviceReadMixedBatch(t *testing.T) {
	f := frag3()
	d := Wrap(newFakeTUN(rtpLocalA, f[0], rtpLocalA, f[1], f[2]), bobAtAlice, nil)
	bufs := make([][]byte, 6)
	for i := range bufs {
		bufs[i] = make([]byte, testOffset+2048)
	}
	sizes := make([]int, len(bufs))
	n, err := d.Read(bufs, sizes, testOffset)
	if err != nil {
		t.Fatalf("Read() error %v", err)
	}
	var rtp, frags [][]byte
	for i := range n {
		p := bufs[i][testOffset : testOffset+sizes[i]]
		switch {
		case sizes[i] == 0:
		case bytes.Equal(p, rtpWire):
			rtp = append(rtp, p)
		default:
			frags = append(frags, bytes.Clone(p))
		}
	}
	if len(rtp) != 2 {
		t.Errorf("Read() returned %d RTP packets mapped, want 2", len(rtp))
	}
	if d.dirs[outbound].npending.Load() != 0 {
		t.Errorf("fragments left pending with free slots in the batch")
	}
	checkFragments(t, frags, 1420, noDF(onWireA.fromAlice(bigInviteTmpl)))
}

// TestDeviceSIPFloodFragments floods first fragments of SIP messages, each
// of its own datagram: past the reassembly limit they would pass
// unreassembled, but the SIP flood limit still applies, and those within
// it are refused since they carry wire addresses unrewritten.
func TestDeviceSIPFloodFragments(t *testing.T) {
	inner := newFakeTUN()
	d := Wrap(inner, aliceAtBob, nil)
	d.clock = func() int64 { return 0 }
	first := fragmentAt(onWireA.fromAlice(bigInviteTmpl), 1500)[0]
	const n = maxPerSource + 2*sipBurst
	for id := range uint16(n) {
		p := bytes.Clone(first)
		binary.BigEndian.PutUint16(p[4:], id)
		buf := make([]byte, len(p), 2048)
		copy(buf, fixIPChecksum(p))
		if _, err := d.Write([][]byte{buf}, 0); err != nil {
			t.Fatalf("Write() error %v", err)
		}
	}
	got := d.Stats().Inbound
	want := Counts{
		Packets: sipBurst, SIPRefused: sipBurst,
		Reassembly: ReassemblyCounts{Held: maxPerSource, OverLimit: 2 * sipBurst},
		Dropped:    DropCounts{SIPFlood: sipBurst},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Stats().Inbound = %+v\nwant %+v", got, want)
	}
	if len(inner.written) != 0 {
		t.Errorf("%d fragments written, want 0", len(inner.written))
	}
}
