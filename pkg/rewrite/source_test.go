package rewrite

import (
	"bytes"
	"strings"
	"testing"
)

// TestDeviceWriteDropsSpoofedSources is issue 13 item 4: a peer may only
// appear as its own phones. A packet whose wire source is 10.254.s.p would
// reach our phones as our own line s, so it is dropped and counted, on the
// RTP path and the SIP path alike, and the packets around it still pass.
func TestDeviceWriteDropsSpoofedSources(t *testing.T) {
	var log strings.Builder
	inner := newFakeTUN()
	d := Wrap(inner, bobAtAlice, newTestLogger(&log))
	// Bob's line 2 is 10.255.2.1 on the wire and 10.7.2.1 here; 10.254.2.1
	// on the wire is our own line 2.
	asOurLine2 := udp4("10.254.2.1", "10.254.1.1", 5004, 5004, []byte("rtp"))
	asOurPi := udp4("10.254.1.2", "10.254.1.1", 5060, 5060, place{alice: "10.254.1.1", bob: "10.254.1.2"}.sip(inviteTmpl))
	foreign := udp4("192.0.2.1", "10.254.1.1", 5004, 5004, []byte("rtp"))
	sipAsOurs := onWireB.fromBob(okTmpl)
	copy(sipAsOurs[12:16], []byte{10, 254, 3, 1})
	sipAsOurs = fixChecksums(sipAsOurs)
	in := [][]byte{rtpWire, asOurLine2, foreign, onWireB.fromBob(okTmpl), asOurPi, sipAsOurs, rtpWire}
	bufs := make([][]byte, len(in))
	for i, p := range in {
		bufs[i] = make([]byte, testOffset+len(p), 4096)
		copy(bufs[i][testOffset:], p)
	}
	if n, err := d.Write(bufs, testOffset); n != len(in) || err != nil {
		t.Fatalf("Write() = %d, %v, want %d, nil", n, err, len(in))
	}
	want := [][]byte{swapAddrs(rtpLocalA), atAlice.fromBob(okTmpl), swapAddrs(rtpLocalA)}
	if len(inner.written) != len(want) {
		t.Fatalf("Write wrote %d packets, want %d (the spoofed ones dropped):\n%q", len(inner.written), len(want), inner.written)
	}
	for i := range want {
		if !bytes.Equal(inner.written[i], want[i]) {
			t.Errorf("written[%d] = %q, want %q", i, inner.written[i], want[i])
		}
	}
	got := d.Stats().Inbound
	if got.Dropped.SourceOurs != 3 || got.Dropped.SourceForeign != 1 {
		t.Errorf("Inbound.Dropped = %+v, want SourceOurs 3, SourceForeign 1", got.Dropped)
	}
	if got.Packets != 3 {
		t.Errorf("Inbound.Packets = %d, want 3: dropped packets are counted by reason only", got.Packets)
	}
	if n := strings.Count(log.String(), "drop-source-ours"); n != 1 {
		t.Errorf("log has %d lines about drop-source-ours, want 1 (then only counted):\n%s", n, log.String())
	}
}

// TestSpoofedSource is the decision alone, on the edges of the wire plan.
func TestSpoofedSource(t *testing.T) {
	tests := []struct {
		name string
		pkt  []byte
		want event
		bad  bool
	}{
		{"the peer's phone", udp4("10.255.1.1", "10.254.1.1", 1, 2, nil), 0, false},
		{"the peer's Pi", udp4("10.255.1.2", "10.254.1.1", 1, 2, nil), 0, false},
		{"our line 2", udp4("10.254.2.1", "10.254.1.1", 1, 2, nil), evDropSourceOurs, true},
		{"our 10.0.0.1", udp4("10.254.0.1", "10.254.1.1", 1, 2, nil), evDropSourceOurs, true},
		{"a node index", udp4("10.7.1.1", "10.254.1.1", 1, 2, nil), evDropSourceForeign, true},
		{"our own plan unmapped", udp4("10.0.2.1", "10.254.1.1", 1, 2, nil), evDropSourceForeign, true},
		{"outside 10/8", udp4("192.0.2.1", "10.254.1.1", 1, 2, nil), evDropSourceForeign, true},
		{"IPv6: left to NonIPv4", append([]byte{0x60}, make([]byte, 39)...), 0, false},
		{"short: left to Malformed", []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 254}, 0, false},
		{"empty", nil, 0, false},
	}
	for _, tt := range tests {
		ev, bad := spoofedSource(tt.pkt)
		if ev != tt.want || bad != tt.bad {
			t.Errorf("%s: spoofedSource = %v, %v, want %v, %v", tt.name, ev, bad, tt.want, tt.bad)
		}
	}
}

func TestDeviceWriteRTPAllocs(t *testing.T) {
	d := Wrap(&discardTUN{}, bobAtAlice, nil)
	buf := make([]byte, testOffset+len(rtpWire), 2048)
	bufs := [][]byte{buf}
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf[testOffset:], rtpWire)
		bufs[0] = buf
		_, _ = d.Write(bufs, testOffset)
	})
	if allocs != 0 {
		t.Errorf("Write of an RTP packet allocates %v times, want 0", allocs)
	}
}
