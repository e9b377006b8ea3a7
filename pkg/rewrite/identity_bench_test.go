package rewrite

import "testing"

// BenchmarkDeviceWriteInvite is an INVITE from the peer through Write: the
// inbound SIP path, with the impersonation check. The clock moves a second
// per message so that the flood limit never drops one.
func BenchmarkDeviceWriteInvite(b *testing.B) {
	pkt := onWireB.fromBob(callBackTmpl)
	d := Wrap(&discardTUN{}, bobAtAlice, nil)
	var now int64
	d.clock = func() int64 { now += 1e9; return now }
	buf := make([]byte, testOffset+len(pkt), 4096)
	bufs := [][]byte{buf}
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf[testOffset:], pkt)
		bufs[0] = buf[:testOffset+len(pkt)]
		_, _ = d.Write(bufs, testOffset)
	}
	if s := d.Stats().Inbound; s.SIPRewritten == 0 || s.Dropped != (DropCounts{}) {
		b.Fatalf("the INVITE was not rewritten: %+v", s)
	}
}
