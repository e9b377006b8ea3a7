package rewrite

import (
	"bytes"
	"testing"
)

// The benchmarks behind bench/out/rewrite.json (mk/rewrite.mk): the cost of
// one packet through Device, as wireguard-go drives it.

// BenchmarkDeviceReadRTP is the RTP fast path: map in place, count the
// line's media and the flow's loss and jitter.
func BenchmarkDeviceReadRTP(b *testing.B) {
	d := Wrap(&rtpTUN{pkt: bytes.Clone(rtpLocalA)}, bobAtAlice, nil)
	bufs := [][]byte{make([]byte, 2048)}
	sizes := make([]int, 1)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = d.Read(bufs, sizes, testOffset)
	}
	if c := d.Calls(); len(c) != 1 || c[0].Sent.Lost != 0 {
		b.Fatalf("Calls() = %+v, want one call, nothing lost", c)
	}
	reportLatency(b, d.Latency().Outbound, d.Latency().ControlOutbound)
}

// reportLatency reports what the Device's own histogram saw (a sample of
// the batches, timed inside Read or Write), beside the benchmark's own
// average, and its control (the same readings around nothing).
func reportLatency(b *testing.B, h, control Histogram) {
	if h.Packets() == 0 {
		return
	}
	b.ReportMetric(float64(h.Quantile(0.5).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(h.Quantile(0.99).Nanoseconds()), "p99-ns")
	if control.Packets() != 0 {
		b.ReportMetric(float64(control.Quantile(0.5).Nanoseconds()), "control-p50-ns")
		b.ReportMetric(float64(control.Quantile(0.99).Nanoseconds()), "control-p99-ns")
	}
}

// BenchmarkDeviceWriteRTP is the same from the wire.
func BenchmarkDeviceWriteRTP(b *testing.B) {
	d := Wrap(&discardTUN{}, bobAtAlice, nil)
	pkt := bytes.Clone(rtpWire)
	buf := make([]byte, testOffset+len(pkt), 2048)
	bufs := [][]byte{buf}
	b.ReportAllocs()
	for b.Loop() {
		// Copy back the wire form each time (the write maps it in place)
		// and advance the sequence number as a stream does.
		copy(buf[testOffset:], pkt)
		pkt[31]++
		bufs[0] = buf
		_, _ = d.Write(bufs, testOffset)
	}
	reportLatency(b, d.Latency().Inbound, d.Latency().ControlInbound)
}

// BenchmarkDeviceInvite is an INVITE with SDP read from a phone and rewritten
// for the wire.
func BenchmarkDeviceInvite(b *testing.B) {
	pkt := atAlice.fromAlice(inviteTmpl)
	d := Wrap(&repeatTUN{pkt: pkt}, bobAtAlice, nil)
	bufs := [][]byte{make([]byte, 4096)}
	sizes := make([]int, 1)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		_, _ = d.Read(bufs, sizes, testOffset)
	}
	if s := d.Stats().Outbound; s.SIPRewritten != s.Packets {
		b.Fatalf("Stats() = %+v, want every INVITE rewritten", s)
	}
}

// BenchmarkDeviceFragmentedInvite is the 3.3 kB INVITE arriving from a phone
// as three fragments in one batch: reassembled, rewritten, fragmented again
// at the tunnel MTU. One op is the whole datagram.
func BenchmarkDeviceFragmentedInvite(b *testing.B) {
	frags := frag3()
	d := Wrap(&batchTUN{pkts: frags}, bobAtAlice, nil)
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, len(bufs))
	b.SetBytes(int64(len(atAlice.fromAlice(bigInviteTmpl))))
	b.ReportAllocs()
	for b.Loop() {
		if n, _ := d.Read(bufs, sizes, testOffset); n < 3 {
			b.Fatalf("Read() = %d packets, want 3 fragments", n)
		}
	}
	if s := d.Stats().Outbound; s.SIPRewritten == 0 || s.SIPRewritten != s.Reassembly.Datagrams {
		b.Fatalf("Stats() = %+v, want every datagram reassembled and rewritten", s)
	}
}

// batchTUN reads the same batch of packets forever.
type batchTUN struct {
	fakeTUN
	pkts [][]byte
}

func (t *batchTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for ; n < len(t.pkts) && n < len(bufs); n++ {
		sizes[n] = copy(bufs[n][offset:], t.pkts[n])
	}
	return n, nil
}

// discardTUN drops what is written to it.
type discardTUN struct{ fakeTUN }

func (*discardTUN) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }
