package rewrite

import (
	"encoding/binary"
	"testing"
)

// FuzzObserveRTP feeds hostile RTP headers (sequence numbers, timestamps,
// SSRCs, payload types in any order) with arbitrary arrival spacing to the
// per-packet call statistics. Properties: no panic; every RTP-looking
// packet is counted; received (Expected − Lost) never exceeds the packets
// counted; Expected stays within what the sequence numbers can claim
// (maxDropout per packet); jitter is not negative.
func FuzzObserveRTP(f *testing.F) {
	// Seeds: in order, a wrap, a reorder, a duplicate, an SSRC change.
	seed := func(hdrs ...[4]uint32) []byte {
		var b []byte
		for _, h := range hdrs {
			var p [16]byte
			p[0], p[1] = 0x80, byte(h[0])
			binary.BigEndian.PutUint16(p[2:], uint16(h[1]))
			binary.BigEndian.PutUint32(p[4:], h[2])
			binary.BigEndian.PutUint32(p[8:], h[3])
			binary.BigEndian.PutUint32(p[12:], 20_000_000) // 20 ms
			b = append(b, p[:]...)
		}
		return b
	}
	f.Add(seed([4]uint32{0, 1, 160, 7}, [4]uint32{0, 2, 320, 7}, [4]uint32{0, 3, 480, 7}))
	f.Add(seed([4]uint32{8, 65534, 0, 7}, [4]uint32{8, 65535, 160, 7}, [4]uint32{8, 0, 320, 7}, [4]uint32{8, 1, 480, 7}))
	f.Add(seed([4]uint32{0, 10, 0, 7}, [4]uint32{0, 11, 160, 7}, [4]uint32{0, 13, 480, 7}, [4]uint32{0, 12, 320, 7}, [4]uint32{0, 12, 320, 7}))
	f.Add(seed([4]uint32{0, 5, 0, 1}, [4]uint32{0, 6, 160, 1}, [4]uint32{0, 900, 0, 2}, [4]uint32{0, 901, 160, 2}))
	f.Add(seed([4]uint32{101, 1, 0, 7}, [4]uint32{96, 2, 0, 7}, [4]uint32{200, 3, 0, 7}))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := Wrap(newFakeTUN(), bobAtAlice, nil)
		var now int64
		d.clock = func() int64 { return now }
		pkt := make([]byte, 20+udpHeaderLen+rtpHeaderLen)
		rtp := uint64(0)
		n := 0
		for ; len(b) >= 16 && n < 2000; b, n = b[16:], n+1 {
			copy(pkt[20+udpHeaderLen:], b[:12])
			now += int64(binary.BigEndian.Uint32(b[12:16]))
			if isRTP(pkt[20+udpHeaderLen:]) {
				rtp++
			}
			d.observeRTP(inbound, pkt, 20, 1, 2, now)
		}
		calls := d.Calls()
		if rtp == 0 {
			if len(calls) != 0 {
				t.Fatalf("calls %+v from no RTP", calls)
			}
			return
		}
		if len(calls) != 1 {
			t.Fatalf("%d calls from one flow", len(calls))
		}
		s := calls[0].Received
		if s.Packets != rtp {
			t.Fatalf("counted %d packets, %d were RTP", s.Packets, rtp)
		}
		if rcv := int64(s.Expected) - s.Lost; rcv < 0 || uint64(rcv) > s.Packets {
			t.Fatalf("received %d (expected %d, lost %d) of %d packets", rcv, s.Expected, s.Lost, s.Packets)
		}
		if s.Expected > s.Packets*maxDropout+1 {
			t.Fatalf("expected %d from %d packets", s.Expected, s.Packets)
		}
		if s.Jitter < 0 {
			t.Fatalf("jitter %v", s.Jitter)
		}
	})
}
