package rewrite

import (
	"context"
	"encoding/binary"
	"log/slog"
	"math/bits"
	"time"

	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/sipmsg"
)

// The per-packet path: everything an RTP packet runs through in Read and
// Write, in one file so that its machine code lies together (the linker
// lays a package's functions out file by file, in order). On a loaded
// machine a packet finds the rewriter's code out of the caches and, after
// the TUN's system call, out of the TLB (on a kernel with page-table
// isolation and no PCID every system call empties it); each other page of
// code is one more page-table walk before the packet can leave. Spread
// over the files it was written in, the path touched some twelve pages of
// code; here it is a few. The SIP and fragment path stays where it is.

// now reads the Device's clock.
func (d *Device) now() int64 {
	if d.clock != nil {
		return d.clock()
	}
	return int64(time.Since(d.base))
}

// Read reads packets from the TUN and maps them for the wire.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if d.dirs[outbound].npending.Load() > 0 {
		if n := d.readPending(bufs, sizes, offset); n > 0 {
			return n, nil
		}
	}
	n, err := d.inner.Read(bufs, sizes, offset)
	if n <= 0 {
		if n == 0 && err == nil && d.dirs[outbound].npending.Load() > 0 {
			// Woken (WakeRead) for an answer of ours to the peer.
			return d.readPending(bufs, sizes, offset), nil
		}
		return n, err
	}
	now := d.now()
	d.observeControl(outbound, now, n)
	wire := d.wire()
	for i := range n {
		if offset < 0 || offset > len(bufs[i]) || sizes[i] < 0 || sizes[i] > len(bufs[i])-offset {
			continue
		}
		pkt, ihl, res, slow := classify(bufs[i][offset : offset+sizes[i]])
		if slow || oversized(pkt, res, wire) {
			k := d.readSlow(bufs, sizes, offset, i, n, now, wire)
			d.observe(outbound, now, n)
			return k, err
		}
		sizes[i] = d.plain(pkt, ihl, res, outbound, now)
	}
	d.observe(outbound, now, n)
	return n, err
}

// Write maps packets from the wire for the TUN and writes them to it.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if len(bufs) == 0 {
		return d.inner.Write(bufs, offset)
	}
	now := d.now()
	d.observeControl(inbound, now, len(bufs))
	for i, b := range bufs {
		if offset < 0 || offset > len(b) {
			continue
		}
		// A spoofed packet must leave the batch: only the slow path
		// rebuilds the list handed to the inner device.
		if _, bad := spoofedSource(b[offset:]); bad {
			return d.writeSlow(bufs, offset, i, now)
		}
		pkt, ihl, res, slow := classify(b[offset:])
		if slow {
			return d.writeSlow(bufs, offset, i, now)
		}
		n := d.plain(pkt, ihl, res, inbound, now)
		bufs[i] = b[:offset+n]
	}
	d.observe(inbound, now, len(bufs))
	return d.inner.Write(bufs, offset)
}

// spoofedSource reports whether a packet from the peer claims a source
// other than the peer's own addresses, and which kind. A peer may only ever
// appear as its own phones and Pi (wire 10.255.s.p, our 10.i.s.p): a source
// of wire 10.254.s.p would reach our phones as our own line s, and anything
// else as a node it is not. WireGuard's allowed IPs already keep out every
// source outside the two wire /16s, so the check is two byte compares.
// Packets too short to hold an IPv4 source, or not IPv4, are left to the
// usual path (counted Malformed or NonIPv4); WireGuard admits no IPv6.
func spoofedSource(pkt []byte) (event, bool) {
	if len(pkt) < ipHeaderLen || pkt[0]>>4 != 4 {
		return 0, false
	}
	switch {
	case pkt[offSrc] == 10 && pkt[offSrc+1] == numplan.WireSender:
		return 0, false
	case pkt[offSrc] == 10 && pkt[offSrc+1] == numplan.WireReceiver:
		return evDropSourceOurs, true
	}
	return evDropSourceForeign, true
}

// classify checks pkt (trimming it to its IP total length) and reports
// whether it needs its direction's lock: a UDP SIP message or a fragment of
// a UDP datagram. What it learns is handed to plain, so that the RTP path
// reads each header once.
func classify(pkt []byte) (_ []byte, ihl int, res Result, slow bool) {
	pkt, ihl, res = check(pkt)
	if res != Plain || pkt[offProto] != protoUDP {
		return pkt, ihl, res, false
	}
	if binary.BigEndian.Uint16(pkt[offFlags:])&(flagMF|fragOffsetMask) != 0 {
		return pkt, ihl, res, true
	}
	return pkt, ihl, res, len(pkt) >= ihl+udpHeaderLen && udpSIP(pkt[ihl:])
}

// plain maps a packet that classify found neither SIP nor a UDP fragment in
// place and returns its new size; RTP is counted per flow. pkt, ihl and res
// are what classify returned.
func (d *Device) plain(pkt []byte, ihl int, res Result, dir int, now int64) int {
	if res != Plain {
		d.count(dir, res)
		return len(pkt)
	}
	// Packets are mapped in place: keep the local source before it goes.
	addrs := [8]byte(pkt[offSrc : offDst+4])
	res = mapInPlace(pkt, ihl, d.peer, numplan.Direction(dir))
	d.count(dir, res)
	if res != Plain || pkt[offProto] != protoUDP || len(pkt) < ihl+udpHeaderLen {
		return len(pkt)
	}
	sport := binary.BigEndian.Uint16(pkt[ihl:])
	dport := binary.BigEndian.Uint16(pkt[ihl+2:])
	var local, remote uint64
	if dir == outbound {
		local, remote = endpoint(addrs[0:4], sport), endpoint(addrs[4:8], dport)
	} else {
		local, remote = endpoint(pkt[offDst:offDst+4], dport), endpoint(pkt[offSrc:offSrc+4], sport)
	}
	// Only a local phone's media is a call on this node.
	if l := local >> 16; l>>16 == 10<<8 {
		if s := uint8(l >> 8); uint8(l) == numplan.HostPhone && numplan.ValidLine(int(s)) {
			d.media[dir][s].Add(1)
		}
		d.observeRTP(dir, pkt, ihl, local, remote, now)
	}
	return len(pkt)
}

// count counts a packet's result, and logs the first of an unusual kind.
func (d *Device) count(dir int, res Result) {
	if res == Plain {
		d.hot[dir].plain.Add(1)
		return
	}
	d.counts[dir].n[res].Add(1)
	switch res {
	case SIPRewritten, SIPUnchanged, SIPOfflineACK, SIPAnonymousACK, SIPAnswerToPeer:
	default:
		if !d.logged[dir][res].Load() && !d.logged[dir][res].Swap(true) {
			d.log.LogAttrs(context.Background(), slog.LevelInfo,
				"rewrite: first packet of this kind, later ones are only counted",
				slog.String("dir", numplan.Direction(dir).String()), slog.String("kind", res.String()))
		}
	}
}

// oversized reports whether a checked IPv4 packet is larger than the
// tunnel carries. Only IPv4 can be cut; WireGuard admits nothing else.
func oversized(pkt []byte, res Result, wire int) bool {
	return len(pkt) > wire && res == Plain
}

// wire is the tunnel MTU: what SetMTU set, else the inner device's MTU.
func (d *Device) wire() int {
	if m := d.wireMTU.Load(); m > 0 {
		return int(m)
	}
	return d.mtu()
}

// check validates the IPv4 header of pkt and trims pkt to its total length.
// It returns Plain for a packet that can be mapped, NonIPv4 or Malformed.
func check(pkt []byte) (_ []byte, ihl int, res Result) {
	if len(pkt) == 0 || pkt[0]>>4 != 4 {
		return pkt, 0, NonIPv4
	}
	if len(pkt) < ipHeaderLen {
		return pkt, 0, Malformed
	}
	ihl = int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[offTotalLen:]))
	if ihl < ipHeaderLen || total < ihl || total > len(pkt) {
		return pkt, 0, Malformed
	}
	return pkt[:total], ihl, Plain
}

// mapInPlace maps the IP addresses of a valid IPv4 packet and adjusts the
// checksums that cover them. It returns Plain, Fragment, SIPOverTCP or
// BadTransport.
func mapInPlace(pkt []byte, ihl int, peer uint8, dir numplan.Direction) Result {
	d, changed := mapAddrs(pkt[offSrc:offDst+4], peer, dir)
	if changed {
		adjustChecksum(pkt[offChecksum:], d)
	}
	frag := binary.BigEndian.Uint16(pkt[offFlags:])
	if frag&fragOffsetMask != 0 {
		// No transport header in this fragment.
		return Fragment
	}
	res := Plain
	if frag&flagMF != 0 {
		// The first fragment carries the transport header, and its checksum
		// covers the whole datagram including the pseudo-header, so the same
		// adjustment applies.
		res = Fragment
	}
	tp := pkt[ihl:]
	switch pkt[offProto] {
	case protoUDP:
		if len(tp) < udpHeaderLen {
			return BadTransport
		}
		if changed {
			adjustUDPChecksum(tp[offUDPChecksum:], d)
		}
		if res == Plain && int(binary.BigEndian.Uint16(tp[offUDPLen:])) != len(tp) {
			res = BadTransport
		}
	case protoTCP:
		if len(tp) < offTCPChecksum+2 {
			return BadTransport
		}
		if changed {
			adjustChecksum(tp[offTCPChecksum:], d)
		}
		if res == Plain {
			if off := int(tp[offTCPDataOff]>>4) * 4; off >= 20 && off < len(tp) && sipmsg.IsSIP(tp[off:]) {
				res = SIPOverTCP
			}
		}
	case protoICMP:
		if len(tp) < icmpHeaderLen {
			return BadTransport
		}
		if res == Plain {
			mapICMPError(tp, peer, dir)
		}
	}
	return res
}

// mapAddrs maps the source and destination at a[0:4] and a[4:8] in place and
// returns the one's-complement difference of the 16-bit words, ready for
// adjustChecksum.
func mapAddrs(a []byte, peer uint8, dir numplan.Direction) (d uint32, changed bool) {
	a = a[:8]
	// ToWire and FromWire inline where numplan.Map does not: this runs for
	// every packet.
	var (
		src, dst [4]byte
		c1, c2   bool
	)
	if dir == numplan.Inbound {
		src, c1 = numplan.FromWire([4]byte(a[0:4]), peer)
		dst, c2 = numplan.FromWire([4]byte(a[4:8]), peer)
	} else {
		src, c1 = numplan.ToWire([4]byte(a[0:4]), peer)
		dst, c2 = numplan.ToWire([4]byte(a[4:8]), peer)
	}
	if !c1 && !c2 {
		return 0, false
	}
	for k := 0; k < 8; k += 2 {
		d += uint32(^binary.BigEndian.Uint16(a[k:]))
	}
	copy(a[0:4], src[:])
	copy(a[4:8], dst[:])
	for k := 0; k < 8; k += 2 {
		d += uint32(binary.BigEndian.Uint16(a[k:]))
	}
	return d, true
}

// adjustChecksum applies the difference d to the checksum at c[0:2] (RFC 1624
// eqn. 3) and returns the difference of the checksum word itself, for a
// checksum that covers this one.
//
// A stored 0xffff is left alone: no correct TCP, IPv4 or ICMP error checksum
// can be 0xffff (it would need all-zero data), and skipping it keeps every
// update exactly invertible, so mapping a packet out and back in gives back
// its bytes even when a checksum was wrong to begin with.
func adjustChecksum(c []byte, d uint32) uint32 {
	old := binary.BigEndian.Uint16(c)
	if old == 0xffff {
		return 0
	}
	s := uint32(^old) + d
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	nc := ^uint16(s)
	binary.BigEndian.PutUint16(c, nc)
	return uint32(^old) + uint32(nc)
}

// adjustUDPChecksum is adjustChecksum for UDP, where 0 means "no checksum"
// and a computed 0 is sent as 0xffff (RFC 768).
func adjustUDPChecksum(c []byte, d uint32) uint32 {
	old := binary.BigEndian.Uint16(c)
	if old == 0 {
		return 0
	}
	s := uint32(^old) + d
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	nc := ^uint16(s)
	if nc == 0 {
		nc = 0xffff
	}
	binary.BigEndian.PutUint16(c, nc)
	return uint32(^old) + uint32(nc)
}

// udpSIP reports whether a UDP datagram (header and payload; at least the
// header) goes to the SIP path.
func udpSIP(u []byte) bool {
	p := u[udpHeaderLen:]
	if binary.BigEndian.Uint16(u) == sipPort || binary.BigEndian.Uint16(u[2:]) == sipPort {
		return !sipmsg.KeepAlive(p)
	}
	// RTP and RTCP (version 2) start at 0x80 or above, where LooksLikeSIP
	// gives up at the first byte: saying so here keeps the voice path out
	// of another package's code (and its page).
	if len(p) > 0 && p[0] >= 0x80 {
		return false
	}
	return sipmsg.LooksLikeSIP(p)
}

func endpoint(a []byte, port uint16) uint64 {
	return uint64(binary.BigEndian.Uint32(a))<<16 | uint64(port)
}

func flowHash(k flowKey) uint32 {
	h := k.local*0x9e3779b97f4a7c15 ^ k.remote*0xc2b2ae3d27d4eb4f
	return uint32(h >> (64 - flowBits))
}

// lookupLocked returns the flow k, making room for it if it is new, or nil
// if the table is full of flows that are still live.
func (t *flowTable) lookupLocked(k flowKey, now int64) *rtpFlow {
	if t.slots == nil {
		t.slots = new([flowSlots]uint16)
	}
	i := flowHash(k)
	for ; t.slots[i] != 0; i = (i + 1) & (flowSlots - 1) {
		if f := &t.flows[t.slots[i]-1]; f.key == k {
			return f
		}
	}
	var n int
	if len(t.flows) < maxFlows {
		t.flows = append(t.flows, rtpFlow{})
		n = len(t.flows) - 1
	} else {
		if now < t.noEvictUntil {
			return nil
		}
		for j := range t.flows {
			if t.flows[j].last < t.flows[n].last {
				n = j
			}
		}
		if now-t.flows[n].last < int64(flowEvictIdle) {
			t.noEvictUntil = t.flows[n].last + int64(flowEvictIdle)
			return nil
		}
		t.remove(t.flows[n].key)
		// Removing may have moved entries; find k's free slot again.
		i = flowHash(k)
		for t.slots[i] != 0 {
			i = (i + 1) & (flowSlots - 1)
		}
	}
	t.flows[n] = rtpFlow{key: k, first: now}
	t.slots[i] = uint16(n + 1)
	return &t.flows[n]
}

// isRTP reports whether a UDP payload looks like RTP: version 2, at least
// a fixed header, and not RTCP (whose packet types 200-204 fall where RTP
// payload types 72-76 with the marker bit would; RFC 5761 §4 keeps RTP off
// 64-95 for this reason).
func isRTP(p []byte) bool {
	return len(p) >= rtpHeaderLen && p[0]>>6 == 2 && (p[1] < 192 || p[1] > 223)
}

// observeRTP counts the RTP packet pkt (a checked IPv4 UDP packet, not a
// fragment, ihl its header length) in dir's table. local and remote are its two ends in this
// node's plan.
func (d *Device) observeRTP(dir int, pkt []byte, ihl int, local, remote uint64, now int64) {
	p := pkt[ihl+udpHeaderLen:]
	if !isRTP(p) {
		return
	}
	pt := p[1] & 0x7f
	seq := binary.BigEndian.Uint16(p[2:])
	ts := binary.BigEndian.Uint32(p[4:])
	ssrc := binary.BigEndian.Uint32(p[8:])
	h, t := &d.hot[dir], &d.flows[dir]
	h.mu.Lock()
	f := t.lookupLocked(flowKey{local, remote}, now)
	if f == nil {
		h.mu.Unlock()
		h.untracked.Add(1)
		return
	}
	f.packets++
	f.last = now
	f.pt = pt
	if !f.started || f.ssrc != ssrc {
		f.restart(seq, ssrc)
	}
	if f.updateSeq(seq) {
		// The packets go to the receiver's address; its SDP says what
		// the payload types it receives mean.
		dst := local
		if dir == outbound {
			dst = remote
		}
		switch {
		case !f.clockSet || f.clockPT != pt:
			d.setClock(f, pt, dst)
		case f.clock == 0:
			if f.recheck--; f.recheck == 0 {
				d.setClock(f, pt, dst)
			}
		}
		if f.clock != 0 {
			f.updateJitter(ts, now)
		}
	}
	h.mu.Unlock()
}

// setClock looks up the clock rate of payload type pt for packets to dst.
// A payload type change (codec switch, or a DTMF event between voice
// packets) restarts the transit-time reference, since timestamps of
// different payload types need not follow one another.
func (d *Device) setClock(f *rtpFlow, pt uint8, dst uint64) {
	if f.clockPT != pt || !f.clockSet {
		f.transit = false
	}
	f.clockPT, f.clockSet, f.recheck = pt, true, recheckClock
	f.clock = staticClock[pt]
	if f.clock == 0 {
		f.clock = d.sdp.clock(dst, pt)
	}
	if f.clock != 0 {
		f.nsPerTS = float64(time.Second) / float64(f.clock)
	}
}

// restart begins a new source (RFC 3550 A.1 init on the first packet),
// keeping what the previous SSRC of the flow expected and received.
func (f *rtpFlow) restart(seq uint16, ssrc uint32) {
	if f.started {
		f.accExpected += f.expected()
		f.accReceived += f.received
	}
	f.started, f.ssrc = true, ssrc
	f.initSeq(seq)
	f.maxSeq = seq - 1
	f.probation = minSequential
	f.transit = false
}

func (f *rtpFlow) initSeq(seq uint16) {
	f.baseSeq = uint32(seq)
	f.maxSeq = seq
	f.badSeq = seqMod + 1 // so seq == badSeq is false
	f.cycles = 0
	f.received = 0
}

// updateSeq is RFC 3550 A.1 update_seq: it reports whether seq is valid
// (not during probation or a suspected restart).
func (f *rtpFlow) updateSeq(seq uint16) bool {
	udelta := seq - f.maxSeq
	switch {
	case f.probation > 0:
		// A source is valid once minSequential packets arrived in order.
		if seq == f.maxSeq+1 {
			f.probation--
			f.maxSeq = seq
			if f.probation == 0 {
				f.initSeq(seq)
				f.received++
				return true
			}
		} else {
			f.probation = minSequential - 1
			f.maxSeq = seq
		}
		return false
	case udelta < maxDropout:
		// In order, with a permissible gap.
		if seq < f.maxSeq {
			f.cycles += seqMod
		}
		f.maxSeq = seq
	case udelta <= seqMod-maxMisorder:
		// A very large jump: the sender restarted, or this is garbage.
		// Two sequential packets after the jump resynchronise.
		if uint32(seq) == f.badSeq {
			f.initSeq(seq)
		} else {
			f.badSeq = (uint32(seq) + 1) & (seqMod - 1)
			return false
		}
	default:
		// A duplicate or a reordered packet.
	}
	f.received++
	return true
}

// updateJitter is RFC 3550 A.8 with time in nanoseconds: D is the
// difference of the arrival spacing and the timestamp spacing of two
// packets, and the jitter moves 1/16 of the way to |D|.
func (f *rtpFlow) updateJitter(ts uint32, now int64) {
	if !f.transit {
		f.transit, f.lastArr, f.lastTS = true, now, ts
		return
	}
	// A multiplication rather than a division by the clock rate: this
	// runs for every voice packet.
	d := (now - f.lastArr) - int64(float64(int32(ts-f.lastTS))*f.nsPerTS)
	f.lastArr, f.lastTS = now, ts
	if d < 0 {
		d = -d
	}
	f.jitter16 += d - ((f.jitter16 + 8) >> 4)
}

func (h *latencyHist) record(ns int64, packets int) {
	if packets <= 0 {
		return
	}
	h.n[latencyBucket(ns)].Add(uint64(packets))
}

func latencyBucket(ns int64) int {
	if ns < latencySub {
		return int(max(ns, 0))
	}
	e := bits.Len64(uint64(ns)) - 1 // 2^e <= ns, e >= 3
	i := (e-2)*latencySub + int(uint64(ns)>>(e-3)&(latencySub-1))
	return min(i, latencyBuckets-1)
}

// observeControl is the control beside the timed interval: on another one
// batch in latencySampleEvery (half a period away from the timed ones), a
// second clock reading straight after the one that starts the interval,
// with nothing between them, into the control histogram. It is an interval
// of the same shape around nothing: what is in it is the clock read and
// what the machine does to the thread meanwhile (an interrupt, the thread
// switched out, the host taking the CPU), so its tail beside the timed
// interval's tells which part of that is the machine's. It only reads the
// batch count, which observe then moves on. Its histogram is made with
// the direction's first control sample: an idle tunnel keeps none.
func (d *Device) observeControl(dir int, start int64, packets int) {
	if d.hot[dir].batches.Load()%latencySampleEvery != latencySampleEvery/2 {
		return
	}
	end := d.now()
	h := d.control[dir].Load()
	if h == nil {
		if h = new(latencyHist); !d.control[dir].CompareAndSwap(nil, h) {
			h = d.control[dir].Load()
		}
	}
	h.record(end-start, packets)
}

// observe times the batch of packets that entered at start, if it is one
// of the sampled.
func (d *Device) observe(dir int, start int64, packets int) {
	if d.hot[dir].batches.Add(1)%latencySampleEvery == 0 {
		d.latency[dir].record(d.now()-start, packets)
	}
}
