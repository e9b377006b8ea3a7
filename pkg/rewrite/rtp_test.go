package rewrite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// rtpAt builds an RTP packet from src:sport to dst:dport.
func rtpAt(src, dst string, sport, dport uint16, pt uint8, seq uint16, ts, ssrc uint32) []byte {
	p := make([]byte, rtpHeaderLen+160)
	p[0] = 0x80
	p[1] = pt
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[4:], ts)
	binary.BigEndian.PutUint32(p[8:], ssrc)
	return udp4(src, dst, sport, dport, p)
}

// rtpOut is RTP from Alice's phone (10.0.1.1:10000) to Bob's (10.7.2.1:20000)
// as Alice's node reads it.
func rtpOut(pt uint8, seq uint16, ts, ssrc uint32) []byte {
	return rtpAt("10.0.1.1", "10.7.2.1", 10000, 20000, pt, seq, ts, ssrc)
}

// rtpIn is RTP from Bob's phone to Alice's as it arrives from the wire.
func rtpIn(pt uint8, seq uint16, ts, ssrc uint32) []byte {
	return rtpAt("10.255.2.1", "10.254.1.1", 20000, 10000, pt, seq, ts, ssrc)
}

// testClock is a Device clock the test sets.
type testClock struct{ t time.Duration }

func (c *testClock) now() int64 { return int64(c.t) }

func newClockedDevice() (*Device, *fakeTUN, *testClock) {
	inner := newFakeTUN()
	d := Wrap(inner, bobAtAlice, nil)
	c := &testClock{t: time.Hour}
	d.clock = c.now
	return d, inner, c
}

// send passes p through d one packet at a time: Read for outbound, Write
// for inbound.
func send(t *testing.T, d *Device, inner *fakeTUN, out bool, p []byte) {
	t.Helper()
	if out {
		inner.toRead = append(inner.toRead, p)
		bufs := [][]byte{make([]byte, 4096)}
		if _, err := d.Read(bufs, []int{0}, 0); err != nil {
			t.Fatalf("Read() error %v", err)
		}
		return
	}
	buf := make([]byte, len(p), 4096)
	copy(buf, p)
	if _, err := d.Write([][]byte{buf}, 0); err != nil {
		t.Fatalf("Write() error %v", err)
	}
}

func TestCallsLoss(t *testing.T) {
	seqs := func(from, to int) []int {
		var s []int
		for i := from; i <= to; i++ {
			s = append(s, i&0xffff)
		}
		return s
	}
	cat := func(parts ...[]int) []int {
		var s []int
		for _, p := range parts {
			s = append(s, p...)
		}
		return s
	}
	tests := []struct {
		name         string
		seq          []int
		ssrcChangeAt int // index from which the SSRC differs; 0 for none
		wantExpected uint64
		wantLost     int64
	}{
		// RFC 3550 A.1: the first packet of a source is probation, so
		// counting starts at the second.
		{"in order", seqs(1, 50), 0, 49, 0},
		{"gap of two", cat(seqs(1, 10), seqs(13, 20)), 0, 19, 2},
		{"reordered", cat(seqs(1, 5), []int{7, 6}, seqs(8, 10)), 0, 9, 0},
		{"reordered and one lost", cat(seqs(1, 5), []int{8, 6}, seqs(9, 10)), 0, 9, 1},
		{"duplicate", cat(seqs(1, 5), []int{5}, seqs(6, 10)), 0, 9, -1},
		{"wraps", seqs(65530, 65545), 0, 15, 0},
		{"wraps with a loss", cat(seqs(65530, 65535), seqs(65537, 65545)), 0, 15, 1},
		{"late packet from before the wrap", cat(seqs(65530, 65536), []int{65535}, seqs(65537, 65540)), 0, 10, -1},
		{"sender restarts its sequence", cat(seqs(1, 10), seqs(40000, 40009)), 0, 9, 0},
		{"new SSRC keeps the old counts", cat(seqs(1, 10), seqs(500, 505), seqs(507, 510)), 10, 9 + 10, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, inner, clock := newClockedDevice()
			for k, s := range tt.seq {
				ssrc := uint32(0x1234)
				if tt.ssrcChangeAt > 0 && k >= tt.ssrcChangeAt {
					ssrc = 0x5678
				}
				clock.t += 20 * time.Millisecond
				send(t, d, inner, false, rtpIn(0, uint16(s), uint32(k*160), ssrc))
			}
			calls := d.Calls()
			if len(calls) != 1 {
				t.Fatalf("Calls() = %+v, want one call", calls)
			}
			r := calls[0].Received
			if r.Packets != uint64(len(tt.seq)) || r.Expected != tt.wantExpected || r.Lost != tt.wantLost {
				t.Errorf("Received = %d packets, %d expected, %d lost; want %d, %d, %d",
					r.Packets, r.Expected, r.Lost, len(tt.seq), tt.wantExpected, tt.wantLost)
			}
		})
	}
}

// refJitter is RFC 3550 A.8 written out in floating point, in seconds.
func refJitter(arrivals []time.Duration, ts []uint32, rate float64) time.Duration {
	var j float64
	for k := 1; k < len(arrivals); k++ {
		d := (arrivals[k] - arrivals[k-1]).Seconds() - float64(int32(ts[k]-ts[k-1]))/rate
		j += (math.Abs(d) - j) / 16
	}
	return time.Duration(j * 1e9)
}

func TestCallsJitter(t *testing.T) {
	okWithOpus := strings.Replace(okTmpl, "m=audio 20000 RTP/AVP 0 101\n", "m=audio 20000 RTP/AVP 96 101\na=rtpmap:96 opus/48000/2\na=rtpmap:101 telephone-event/8000\n", 1)
	tests := []struct {
		name      string
		sdp       []byte // inbound SIP first, if any
		pt        uint8
		tsStep    uint32
		spacing   func(k int) time.Duration
		wantClock uint32
	}{
		{"PCMU steady", nil, 0, 160, func(int) time.Duration { return 20 * time.Millisecond }, 8000},
		{"PCMA alternating 10 and 30 ms", nil, 8, 160, func(k int) time.Duration { return time.Duration(10+20*(k%2)) * time.Millisecond }, 8000},
		{"G.722 with a late packet", nil, 9, 160, func(k int) time.Duration {
			if k == 20 {
				return 80 * time.Millisecond
			}
			return 20 * time.Millisecond
		}, 8000},
		{"opus from the SDP answer", onWireB.fromBob(okWithOpus), 96, 960, func(k int) time.Duration { return time.Duration(15+10*(k%2)) * time.Millisecond }, 48000},
		{"dynamic type without SDP: no clock, no jitter", nil, 96, 960, func(k int) time.Duration { return time.Duration(15+10*(k%2)) * time.Millisecond }, 0},
		{"telephone-event: no jitter", onWireB.fromBob(okWithOpus), 101, 0, func(int) time.Duration { return 20 * time.Millisecond }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, inner, clock := newClockedDevice()
			if tt.sdp != nil {
				send(t, d, inner, false, tt.sdp)
			}
			var arrivals []time.Duration
			var tss []uint32
			for k := range 60 {
				clock.t += tt.spacing(k)
				ts := 1000 + uint32(k)*tt.tsStep
				arrivals, tss = append(arrivals, clock.t), append(tss, ts)
				send(t, d, inner, true, rtpOut(tt.pt, uint16(k), ts, 0xabc))
			}
			calls := d.Calls()
			if len(calls) != 1 {
				t.Fatalf("Calls() = %+v, want one call", calls)
			}
			s := calls[0].Sent
			if s.ClockRate != tt.wantClock {
				t.Errorf("Sent.ClockRate = %d, want %d", s.ClockRate, tt.wantClock)
			}
			want := time.Duration(0)
			if tt.wantClock != 0 {
				// The first packet is probation: jitter starts with the
				// second.
				want = refJitter(arrivals[1:], tss[1:], float64(tt.wantClock))
			}
			if diff := s.Jitter - want; diff < -time.Microsecond || diff > time.Microsecond {
				t.Errorf("Sent.Jitter = %v, want %v", s.Jitter, want)
			}
			if tt.name == "PCMA alternating 10 and 30 ms" && s.Jitter < 9*time.Millisecond {
				t.Errorf("Sent.Jitter = %v, want close to 10ms", s.Jitter)
			}
		})
	}
}

func TestCallsBothWays(t *testing.T) {
	d, inner, clock := newClockedDevice()
	for k := range 10 {
		clock.t += 20 * time.Millisecond
		send(t, d, inner, true, rtpOut(0, uint16(k), uint32(k*160), 1))
		send(t, d, inner, false, rtpIn(8, uint16(100+k), uint32(k*160), 2))
	}
	// A second call, on line 3, and RTCP and non-local traffic that are
	// not calls.
	send(t, d, inner, true, rtpAt("10.0.3.1", "10.7.1.1", 4000, 5000, 0, 1, 0, 3))
	rtcp := rtpOut(0, 0, 0, 0)
	rtcp[28+1] = 200 // sender report
	send(t, d, inner, true, fixChecksums(rtcp))
	send(t, d, inner, true, rtpAt("192.0.2.1", "10.7.1.1", 4000, 5000, 0, 1, 0, 3))

	got := d.Calls()
	wantFirst := CallStats{
		Peer: bobAtAlice, Line: 1,
		Local:  netip.MustParseAddrPort("10.0.1.1:10000"),
		Remote: netip.MustParseAddrPort("10.7.2.1:20000"),
	}
	if len(got) != 2 {
		t.Fatalf("Calls() = %+v, want 2 calls", got)
	}
	c := got[0]
	if c.Peer != wantFirst.Peer || c.Line != wantFirst.Line || c.Local != wantFirst.Local || c.Remote != wantFirst.Remote {
		t.Errorf("Calls()[0] = %+v, want %+v", c, wantFirst)
	}
	if c.Sent.Packets != 10 || c.Sent.SSRC != 1 || c.Sent.PayloadType != 0 ||
		c.Received.Packets != 10 || c.Received.SSRC != 2 || c.Received.PayloadType != 8 {
		t.Errorf("Calls()[0] = %+v, want 10 packets each way", c)
	}
	if want := d.wall(int64(time.Hour + 10*20*time.Millisecond)); !c.Sent.Last.Equal(want) {
		t.Errorf("Sent.Last = %v, want %v", c.Sent.Last, want)
	}
	if got[1].Line != 3 || got[1].Sent.Packets != 1 || got[1].Received.Packets != 0 {
		t.Errorf("Calls()[1] = %+v, want line 3, 1 packet sent", got[1])
	}
	// MediaPackets still counts every UDP packet of a line's phone.
	if n := d.MediaPackets(1); n != 21 {
		t.Errorf("MediaPackets(1) = %d, want 21", n)
	}

	clock.t += flowExpiry + time.Second
	if got := d.Calls(); len(got) != 0 {
		t.Errorf("Calls() after %v idle = %+v, want none", flowExpiry, got)
	}
}

// TestCallsBounded opens more flows than the table holds: while all are
// live the new ones are not measured; once the old ones have been quiet
// for flowEvictIdle, the oldest make room.
func TestCallsBounded(t *testing.T) {
	d, inner, clock := newClockedDevice()
	for k := range maxFlows + 20 {
		clock.t += time.Millisecond
		if k == maxFlows {
			// A new flow while every flow is live is counted, not
			// measured.
			send(t, d, inner, true, rtpAt("10.0.1.1", "10.7.2.1", 999, 20000, 0, 1, 0, 1))
			if n := d.Stats().Outbound.RTPUntracked; n != 1 {
				t.Errorf("RTPUntracked = %d, want 1", n)
			}
			if n := len(d.Calls()); n != maxFlows {
				t.Fatalf("Calls() has %d flows, want %d", n, maxFlows)
			}
			clock.t += flowEvictIdle
		}
		send(t, d, inner, true, rtpAt("10.0.1.1", "10.7.2.1", uint16(1000+k), 20000, 0, 1, 0, 1))
	}
	got := d.Calls()
	if len(got) != maxFlows {
		t.Fatalf("Calls() has %d flows, want %d", len(got), maxFlows)
	}
	for _, c := range got {
		if c.Local.Port() < 1020 {
			t.Errorf("flow from port %d kept, want the oldest 20 evicted", c.Local.Port())
		}
	}
}

func TestSDPLearn(t *testing.T) {
	msg := []byte("SIP/2.0 200 OK\r\nContent-Type: application/sdp\r\n\r\n" +
		"v=0\r\no=- 1 1 IN IP4 10.7.2.1\r\ns=-\r\nc=IN IP4 10.7.2.1\r\nt=0 0\r\n" +
		"m=audio 20000 RTP/AVP 96 97 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:97 AMR-WB/16000\r\na=rtpmap:101 TELEPHONE-EVENT/8000\r\n" +
		"m=audio 30000 RTP/AVP 98\r\nc=IN IP4 10.7.2.9\r\na=rtpmap:98 speex/32000\r\n" +
		"m=video 40000 RTP/AVP 99\r\na=rtpmap:99 H264/90000\r\n" +
		"m=audio 0 RTP/AVP 100\r\na=rtpmap:100 iLBC/8000\r\n")
	var tab sdpTable
	tab.learnBytes(msg)
	ep := func(a string, port uint16) uint64 { return endpoint(netip.MustParseAddr(a).AsSlice(), port) }
	tests := []struct {
		ep   uint64
		pt   uint8
		want uint32
	}{
		{ep("10.7.2.1", 20000), 96, 48000},
		{ep("10.7.2.1", 20000), 97, 16000},
		{ep("10.7.2.1", 20000), 101, 0},
		{ep("10.7.2.1", 20000), 98, 0},
		{ep("10.7.2.9", 30000), 98, 32000},
		{ep("10.7.2.1", 30000), 98, 0},
		{ep("10.7.2.1", 40000), 99, 0}, // video is not tracked
		{ep("10.7.2.1", 0), 100, 0},    // port 0: stream refused
	}
	for _, tt := range tests {
		if got := tab.clock(tt.ep, tt.pt); got != tt.want {
			t.Errorf("clock(%v, %d) = %d, want %d", addrPort(tt.ep), tt.pt, got, tt.want)
		}
	}
	// Many more endpoints than the table holds: it stays bounded and keeps
	// the newest.
	for k := range 3 * maxSDP {
		tab.learnBytes([]byte(fmt.Sprintf("INVITE sip:x@y SIP/2.0\n\nv=0\nc=IN IP4 10.0.1.1\nm=audio %d RTP/AVP 96\na=rtpmap:96 opus/48000/2\n", 1000+k)))
	}
	if got := tab.clock(ep("10.0.1.1", uint16(1000+3*maxSDP-1)), 96); got != 48000 {
		t.Errorf("newest endpoint forgotten")
	}
	if got := tab.clock(ep("10.0.1.1", 1000), 96); got != 0 {
		t.Errorf("oldest endpoint kept past the table's size")
	}
}

func TestCallsNoAllocs(t *testing.T) {
	d := Wrap(&rtpTUN{pkt: bytes.Clone(rtpLocalA)}, bobAtAlice, nil)
	bufs := [][]byte{make([]byte, 2048)}
	sizes := make([]int, 1)
	_, _ = d.Read(bufs, sizes, testOffset)
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = d.Read(bufs, sizes, testOffset)
	})
	if allocs != 0 {
		t.Errorf("Read of an RTP packet with call statistics allocates %v times, want 0", allocs)
	}
	if c := d.Calls(); len(c) != 1 || c[0].Sent.Lost != 0 || c[0].Sent.Packets < 1000 {
		t.Errorf("Calls() = %+v, want one call, nothing lost", c)
	}
}

// rtpTUN reads an RTP stream: pkt with its sequence number and timestamp
// advanced on each Read, as a phone sends it.
type rtpTUN struct {
	fakeTUN
	pkt []byte
}

func (r *rtpTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	p := r.pkt
	binary.BigEndian.PutUint16(p[30:], binary.BigEndian.Uint16(p[30:])+1)
	binary.BigEndian.PutUint32(p[32:], binary.BigEndian.Uint32(p[32:])+160)
	sizes[0] = copy(bufs[0][offset:], p)
	return 1, nil
}

// TestFlowTableIndex churns the flow table with far more flows than it holds
// and checks after each that every flow kept is found through the index,
// which removal with backward shifting must keep reachable.
func TestFlowTableIndex(t *testing.T) {
	var tab flowTable
	r := uint64(1)
	for n := range 5000 {
		// A small key space, so that keys come back after eviction.
		r = r*6364136223846793005 + 1442695040888963407
		k := flowKey{local: r >> 54, remote: (r >> 40) & 0xf}
		// Each flow quiet long enough to be evicted by the next.
		now := int64(n) * int64(flowEvictIdle)
		f := tab.lookupLocked(k, now)
		f.last = now
		if n%97 != 0 {
			continue
		}
		used := 0
		for _, s := range tab.slots {
			if s != 0 {
				used++
			}
		}
		if used != len(tab.flows) {
			t.Fatalf("after %d inserts: %d index slots used for %d flows", n, used, len(tab.flows))
		}
		for i := range tab.flows {
			if g := tab.lookupLocked(tab.flows[i].key, now); g != &tab.flows[i] {
				t.Fatalf("after %d inserts: flow %d (%v) not found through the index", n, i, tab.flows[i].key)
			}
		}
	}
	if len(tab.flows) != maxFlows {
		t.Errorf("%d flows held, want the table full at %d", len(tab.flows), maxFlows)
	}
}

func TestCallStatsSinceLast(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	stream := func(first, last int) StreamStats {
		return StreamStats{Packets: 1, First: at(first), Last: at(last)}
	}
	tests := []struct {
		name            string
		sent, received  StreamStats
		wantSince, want time.Time
	}{
		{"sent first", stream(1, 5), stream(2, 9), at(1), at(9)},
		{"received first", stream(3, 9), stream(2, 4), at(2), at(9)},
		{"early media: received only", StreamStats{}, stream(2, 4), at(2), at(4)},
		{"sent only", stream(3, 7), StreamStats{}, at(3), at(7)},
	}
	for _, tt := range tests {
		c := CallStats{Sent: tt.sent, Received: tt.received}
		if got := c.Since(); !got.Equal(tt.wantSince) {
			t.Errorf("%s: Since() = %v, want %v", tt.name, got, tt.wantSince)
		}
		if got := c.LastPacket(); !got.Equal(tt.want) {
			t.Errorf("%s: LastPacket() = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// streamPkt is an RTP packet of stream k (local port 10000+k on line 1's
// phone, to the peer's line 1), sequence seq, in this node's plan.
func streamPkt(k int, seq uint16) []byte {
	p := make([]byte, rtpHeaderLen+20)
	p[0], p[1] = 0x80, 0
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[4:], uint32(seq)*160)
	binary.BigEndian.PutUint32(p[8:], uint32(k+1))
	return udp4("10.0.1.1", "10.7.1.1", uint16(10000+k), 4000, p)
}

// observeAt feeds pkt to d's outbound flow table at time now.
func observeAt(d *Device, pkt []byte, now int64) {
	ihl := int(pkt[0]&0x0f) * 4
	local := endpoint(pkt[offSrc:offSrc+4], binary.BigEndian.Uint16(pkt[ihl:]))
	remote := endpoint(pkt[offDst:offDst+4], binary.BigEndian.Uint16(pkt[ihl+2:]))
	d.observeRTP(outbound, pkt, ihl, local, remote, now)
}

// TestFlowTableFull: with more live streams than the table holds, the
// streams in it stay measured (no eviction on every packet, which made
// each packet a scan of the table and every stream's figures wrong); the
// rest are counted untracked; a stream that has gone quiet for
// flowEvictIdle makes room for a new one.
func TestFlowTableFull(t *testing.T) {
	d := Wrap(newFakeTUN(), bobAtAlice, nil)
	const streams, rounds = maxFlows + 44, 20
	pkts := make([][]byte, streams)
	for k := range pkts {
		pkts[k] = streamPkt(k, 1)
	}
	now := int64(0)
	for r := range rounds {
		for k := range streams {
			binary.BigEndian.PutUint16(pkts[k][ipHeaderLen+udpHeaderLen+2:], uint16(r+1))
			observeAt(d, pkts[k], now)
			now += int64(20 * time.Millisecond / streams)
		}
	}
	tb := &d.flows[outbound]
	if n := len(tb.flows); n != maxFlows {
		t.Fatalf("%d flows in the table, want %d", n, maxFlows)
	}
	for i := range tb.flows {
		if f := &tb.flows[i]; f.packets != rounds || f.first >= int64(20*time.Millisecond) || f.expected() != f.received {
			t.Fatalf("flow %v: %d packets since %v, %d expected, %d received; want %d packets since the first round, none lost (evicted and restarted?)",
				addrPort(f.key.local), f.packets, f.first, f.expected(), f.received, rounds)
		}
	}
	if got, want := d.Stats().Outbound.RTPUntracked, uint64((streams-maxFlows)*rounds); got != want {
		t.Errorf("RTPUntracked = %d, want %d", got, want)
	}
	// Stream 0 goes quiet; the others go on. Once it has been quiet for
	// flowEvictIdle, the first untracked stream takes its place.
	quiet := now
	for now < quiet+int64(flowEvictIdle)+int64(100*time.Millisecond) {
		for k := 1; k < streams; k++ {
			observeAt(d, pkts[k], now)
		}
		now += int64(20 * time.Millisecond)
	}
	var have0, haveNew bool
	for i := range tb.flows {
		switch port := uint16(tb.flows[i].key.local); port {
		case 10000:
			have0 = true
		case 10000 + maxFlows:
			haveNew = true
		}
	}
	if have0 || !haveNew {
		t.Errorf("after stream 0 went quiet: it is in the table %v, the first untracked stream %v; want it replaced", have0, haveNew)
	}
}

// BenchmarkRTPOverfullTable is RTP of more streams than the flow table
// holds (maxFlows+44, round robin), as a tunnel carrying 300 calls sees
// it: per packet, what the flow table costs.
func BenchmarkRTPOverfullTable(b *testing.B) {
	d := Wrap(newFakeTUN(), bobAtAlice, nil)
	const streams = maxFlows + 44
	pkts := make([][]byte, streams)
	for k := range pkts {
		pkts[k] = streamPkt(k, 1)
	}
	now, k := int64(0), 0
	b.ReportAllocs()
	for b.Loop() {
		observeAt(d, pkts[k], now)
		now += int64(20 * time.Millisecond / streams)
		if k++; k == streams {
			k = 0
		}
	}
}

// TestCallsLockWithoutAllocs: what Calls does under a flow table's lock
// (snapshotLocked) allocates nothing, even with the table full, so the RTP
// path never waits on the allocator; the snapshot holds the live flows.
func TestCallsLockWithoutAllocs(t *testing.T) {
	d := Wrap(newFakeTUN(), bobAtAlice, nil)
	for k := range maxFlows {
		observeAt(d, streamPkt(k, 1), int64(k))
	}
	tb := &d.flows[outbound]
	snap := make([]rtpFlow, 0, maxFlows)
	allocs := testing.AllocsPerRun(100, func() {
		d.hot[outbound].mu.Lock()
		snap = tb.snapshotLocked(snap[:0], int64(maxFlows))
		d.hot[outbound].mu.Unlock()
	})
	if allocs != 0 {
		t.Errorf("snapshotLocked allocates %v times, want 0", allocs)
	}
	if len(snap) != maxFlows {
		t.Errorf("snapshot of %d flows, want %d", len(snap), maxFlows)
	}
	if got := tb.snapshotLocked(nil, int64(flowExpiry)+int64(maxFlows)/2+1); len(got) != maxFlows/2-1 {
		t.Errorf("after some expired, snapshot of %d flows, want %d", len(got), maxFlows/2-1)
	}
	if n := len(d.Calls()); n != maxFlows {
		t.Errorf("Calls() has %d calls, want %d", n, maxFlows)
	}
}
