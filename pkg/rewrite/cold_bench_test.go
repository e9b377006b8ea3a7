package rewrite

import (
	"bytes"
	"encoding/binary"
	"syscall"
	"testing"
)

// The RTP path as the lab's concurrent calls drive it, rather than warm in
// a loop: many flows taking turns, the caches holding other programs' data
// when a packet comes, and a system call just before the rewriter's work
// (the TUN's read; on a kernel with page-table isolation and no PCID every
// system call empties the TLB). Each op is one packet; p50-ns and p99-ns are
// the Device's own histogram, the interval the lab reports.

// coldFlows is as many RTP flows per direction as the lab's 50 calls give.
const coldFlows = 50

// coldEvict is how much memory is swept between two packets to push the
// rewriter's data and page tables out of the caches, as the other programs
// of a loaded machine do between two packets of a call.
const coldEvict = 4 << 20

var coldSink byte

// coldSweep reads one byte per cache line of buf.
func coldSweep(buf []byte) {
	var x byte
	for i := 0; i < len(buf); i += 64 {
		x += buf[i]
	}
	coldSink += x
}

// flowsTUN reads RTP packets of coldFlows flows in turn, each with its own
// source port, sequence and timestamp, like a phone's streams; its Read
// ends with a system call, as a real TUN's does.
type flowsTUN struct {
	fakeTUN
	pkts [coldFlows][]byte
	next int
}

func newFlowsTUN(tmpl []byte) *flowsTUN {
	t := &flowsTUN{}
	for i := range t.pkts {
		p := bytes.Clone(tmpl)
		binary.BigEndian.PutUint16(p[20:], uint16(10000+2*i)) // source port
		binary.BigEndian.PutUint16(p[26:], 0)                 // no UDP checksum
		t.pkts[i] = p
	}
	return t
}

// advance moves flow i's stream on by one 20 ms packet.
func (t *flowsTUN) advance(i int) []byte {
	p := t.pkts[i]
	binary.BigEndian.PutUint16(p[30:], binary.BigEndian.Uint16(p[30:])+1)
	binary.BigEndian.PutUint32(p[32:], binary.BigEndian.Uint32(p[32:])+160)
	return p
}

func (t *flowsTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	sizes[0] = copy(bufs[0][offset:], t.advance(t.next))
	t.next = (t.next + 1) % coldFlows
	syscall.Getpid()
	return 1, nil
}

// BenchmarkDeviceReadRTPCold is the outbound RTP path under those
// conditions.
func BenchmarkDeviceReadRTPCold(b *testing.B) {
	d := Wrap(newFlowsTUN(rtpLocalA), bobAtAlice, nil)
	bufs := [][]byte{make([]byte, 2048)}
	sizes := make([]int, 1)
	evict := make([]byte, coldEvict)
	for range coldFlows * 4 {
		_, _ = d.Read(bufs, sizes, testOffset)
	}
	before := d.Latency()
	b.ReportAllocs()
	for b.Loop() {
		coldSweep(evict)
		_, _ = d.Read(bufs, sizes, testOffset)
	}
	if c := d.Calls(); len(c) != coldFlows {
		b.Fatalf("Calls() = %d calls, want %d", len(c), coldFlows)
	}
	after := d.Latency()
	reportLatency(b, after.Outbound.Sub(before.Outbound), after.ControlOutbound.Sub(before.ControlOutbound))
}

// BenchmarkDeviceWriteRTPCold is the inbound RTP path under those
// conditions: the system call before it is the one that handed the
// datagram to wireguard-go.
func BenchmarkDeviceWriteRTPCold(b *testing.B) {
	d := Wrap(&discardTUN{}, bobAtAlice, nil)
	src := newFlowsTUN(rtpWire)
	buf := make([]byte, testOffset+len(rtpWire), 2048)
	bufs := [][]byte{buf}
	evict := make([]byte, coldEvict)
	next := 0
	write := func() {
		copy(buf[testOffset:], src.advance(next))
		next = (next + 1) % coldFlows
		bufs[0] = buf
		syscall.Getpid()
		_, _ = d.Write(bufs, testOffset)
	}
	for range coldFlows * 4 {
		write()
	}
	before := d.Latency()
	b.ReportAllocs()
	for b.Loop() {
		coldSweep(evict)
		write()
	}
	if c := d.Calls(); len(c) != coldFlows {
		b.Fatalf("Calls() = %d calls, want %d", len(c), coldFlows)
	}
	after := d.Latency()
	reportLatency(b, after.Inbound.Sub(before.Inbound), after.ControlInbound.Sub(before.ControlInbound))
}
