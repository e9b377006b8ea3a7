package rewrite

import (
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/privacy"
	"github.com/peerline/peerline/pkg/sipmsg"
	"github.com/peerline/peerline/pkg/tokenbucket"
)

// Device is the TUN of one tunnel's wireguard-go device, seen through the
// address map: packets read from the TUN (from local phones, about to be
// encrypted for the peer) are mapped with numplan.Outbound, packets written to
// it (decrypted from the peer) with numplan.Inbound.
//
// A SIP message can grow when its addresses are mapped. On Read the packet
// may use all of len(bufs[i]) past the offset; on Write, all of cap(bufs[i]).
// A message that then exceeds the TUN's MTU is sent as IPv4 fragments. On
// Read, packets that one packet turns into (fragments) go into the unused
// slots of bufs past the count the inner device returned, and what does not
// fit there is returned by the next Read, before the inner device is read
// again. Held fragments and dropped packets get sizes[i] == 0, which
// wireguard-go skips.
//
// Fragments of UDP datagrams are reassembled (bounded; see frag.go) when the
// datagram is SIP, so that its message can be rewritten whole, and the
// result is fragmented again at the MTU. SIP arriving from the peer is
// rate-limited (sipRate) unless it belongs to a dialog a local phone is in
// (dialog.go); RTP never is. While SetPeerState says the peer is
// offline, a call from a local phone is answered here with a 480 instead of
// being sent (offline.go).
type Device struct {
	// The fields every packet reads come first: with the flow tables'
	// headers (flows) they end within the Device's first three cache lines
	// (TestHotLayout). What every packet of one direction writes is on the
	// first line of that direction's hot: on a loaded machine a packet
	// finds the rewriter's data out of the cache, and every other line it
	// touches is another wait on memory, one the atomic counters and the
	// lock cannot overlap with the others (hotDir).
	inner tun.Device
	peer  uint8
	// wireMTU is the largest packet Read hands to WireGuard (SetMTU); 0
	// means the inner device's MTU.
	wireMTU atomic.Int32
	log     *slog.Logger

	// base is the Device's clock origin: times are nanoseconds since it,
	// read through its monotonic clock, one reading per batch of packets.
	base time.Time
	// clock, if set, replaces the monotonic clock (tests).
	clock func() int64

	// hot is allocated on its own so that it starts on a cache line
	// (hotDir).
	hot *[2]hotDir
	// flows is the RTP quality per flow, per direction, each locked by
	// its hot.mu; next to the fields above, so that an RTP packet finds
	// all it reads of the Device on one page.
	flows [2]flowTable

	// dirs is the state of the SIP and fragment path, per direction: the
	// RTP path takes neither lock.
	dirs [2]dirState

	counts [2]counters
	events [2]eventCounters
	// media counts UDP packets to and from each local line's phone
	// (10.0.s.1), per direction, indexed by s: a changing count means the
	// phone is in a call with this peer. One atomic add per packet; no
	// clock read. A count per direction, because the reading and the
	// writing goroutine run on different CPUs: adding to one shared count,
	// every packet of a call had to fetch its cache line from the other
	// CPU first.
	media [2][256]atomic.Uint64
	// latency is the time packets spend in Read and Write (latency.go).
	latency [2]latencyHist
	// control is the control beside latency (observeControl).
	control [2]atomic.Pointer[latencyHist]
	// sdp is the clock rates of the payload types the SIP announced.
	sdp sdpTable
	// logged records which unusual results and events have been logged
	// once; after that they are only counted.
	logged   [2][numResults]atomic.Bool
	loggedEv [2][numEvents]atomic.Bool
	// refusals counts the SIP messages sipmsg refused, by its reason (the
	// last slot for an error that is not one).
	refusals [2][sipmsg.NumReasons + 1]atomic.Uint64
	// sampled is when a refused SIP message was last logged, per
	// direction (sampleRefused).
	sampled [2]atomic.Int64

	// offline is set while the path manager says the peer cannot be
	// reached, and offlineReason says why (SetPeerState, offline.go).
	offline       atomic.Bool
	offlineReason atomic.Pointer[peerState]

	// anon is the rule for anonymous calls from the peer; nil accepts
	// (SetAnonymous, anon.go).
	anon atomic.Pointer[privacy.Rule]

	// third names the other nodes this node knows (SetThirdNodes, third.go).
	third atomic.Pointer[ThirdNodes]
	// notPeer is the test for addresses the peer may not claim as its own
	// (sipgate.go).
	notPeer func([4]byte) bool

	// dialogs are the SIP dialogs the local phones are in, which pass the
	// SIP flood limit (dialog.go). inDialog counts the messages from the
	// peer they let through, dialogFlood those over a dialog's own limit.
	dialogs     dialogTable
	inDialog    atomic.Uint64
	dialogFlood atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// dirState is what the slow path of one direction keeps between packets.
// wireguard-go calls Read from one goroutine but Write from one goroutine per
// peer, so mu guards all of it.
type dirState struct {
	mu sync.Mutex
	// buf is the scratch buffer in which SIP packets are rebuilt.
	buf []byte
	// frag is where one fragment is built before it is copied out.
	frag []byte
	// reasm is created on the first fragment: most tunnels never see one.
	reasm *reassembler
	sink  sink

	// Outbound: packets that found no slot in the Read that made them,
	// returned by the next Read. npending mirrors len(pending)-head so that
	// Read checks it without the lock.
	pending  [][]byte
	head     int
	npending atomic.Int32

	// Inbound: the SIP flood limit, and the list and buffers handed to the
	// inner device's Write when packets were added or removed.
	bucket     tokenbucket.Bucket
	bucketInit bool
	list       [][]byte
	pool       [][]byte
	npool      int

	// Outbound: the 480s answering calls to an offline peer, written to
	// the inner device (offline.go).
	reply      []byte
	replyFrags [][]byte
	replyList  [][]byte
	replyID    uint16

	// Inbound: the 433s and 302s answering anonymous calls, in our plan
	// and mapped for the wire, and a fragment of one (anon.go).
	answer     []byte
	answerOut  []byte
	answerFrag []byte
}

// The SIP flood limit of one tunnel, in messages per second from the peer.
// A call set-up is about a dozen messages counting provisional responses,
// ACK and a retransmission or two; OPTIONS keep-alives and session-timer
// re-INVITEs add one per phone every few tens of seconds. So even every line
// of a node ringing at once, or a three-way conference being set up, stays
// under the burst, and a steady 50 per second is several times what any real
// pair of nodes sustains. A SIP scanner (sipvicious, "friendly-scanner")
// sends hundreds to thousands per second; capped at 50, the desk phone it
// targets still answers its own user, and the Pi spends its time on RTP.
const (
	sipRate  = 50
	sipBurst = 100
)

// hotDir is what every packet of one direction writes, on one cache line:
// the RTP flow table's lock, the latency sample's batch count and the count
// of Plain packets; the count of untracked packets, written only while the
// flow table is full, shares the line. Each is an atomic read-modify-write,
// which the processor does not overlap with other memory accesses, and on
// a loaded machine a packet finds the rewriter's data out of the cache:
// three lines were three waits for memory in a row, one line is one. It
// holds no pointer, so the allocator puts the pair at the start of a
// 256-byte slot with no header before it, on a cache line (TestHotLayout).
// The second line is only padding: it keeps the two directions, written by
// different goroutines, apart.
type hotDir struct {
	// mu guards the direction's flow table (Device.flows).
	mu sync.Mutex
	// batches counts batches, to time one in latencySampleEvery.
	batches atomic.Uint32
	// plain counts Plain packets (counters has the other results).
	plain atomic.Uint64
	// untracked counts packets of flows not measured because the table
	// was full of live flows.
	untracked atomic.Uint64
	_         [128 - 32]byte
}

// counters are the per-result packet counts of one direction, padded so that
// the reading and the writing goroutine do not share a cache line. n[Plain]
// is unused: the count of Plain packets lives in hotDir, on the line the
// direction's every packet writes anyway.
type counters struct {
	n [numResults]atomic.Uint64
	_ [64]byte
}

type eventCounters struct {
	n [numEvents]atomic.Uint64
	_ [64]byte
}

const (
	outbound = int(numplan.Outbound)
	inbound  = int(numplan.Inbound)
)

var _ tun.Device = (*Device)(nil)

// Wrap returns inner with the address map of tunnel peer applied to every
// packet. log may be nil; it should name the tunnel (the supervisor's
// carries "peer"), which Wrap does not add again.
func Wrap(inner tun.Device, peer uint8, log *slog.Logger) *Device {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Device{inner: inner, peer: peer, log: log, base: time.Now(), notPeer: notPeer(peer), hot: new([2]hotDir)}
	d.dialogs.init()
	for dir := range d.dirs {
		d.dirs[dir].sink.ds = &d.dirs[dir]
	}
	return d
}

// wall turns a reading of the Device's clock into a time.
func (d *Device) wall(t int64) time.Time { return d.base.Add(time.Duration(t)) }

// readSlow is Read from packet from on, under the outbound lock, with the
// tunnel MTU Read saw.
func (d *Device) readSlow(bufs [][]byte, sizes []int, offset, from, n int, now int64, wire int) int {
	ds := &d.dirs[outbound]
	ds.mu.Lock()
	defer ds.mu.Unlock()
	s := &ds.sink
	s.bufs, s.sizes, s.offset, s.next, s.cur, s.write = bufs, sizes, offset, n, -1, false
	for i := from; i < n; i++ {
		if offset < 0 || offset > len(bufs[i]) || sizes[i] < 0 || sizes[i] > len(bufs[i])-offset {
			continue
		}
		room := bufs[i][offset:]
		pkt, ihl, res, slow := classify(room[:sizes[i]])
		if !slow && !oversized(pkt, res, wire) {
			sizes[i] = d.plain(pkt, ihl, res, outbound, now)
			continue
		}
		s.cur = i
		var r int
		if slow {
			r = d.slowLocked(ds, outbound, room, sizes[i], now)
		} else {
			// Not SIP, not a fragment, larger than the tunnel carries.
			r = d.fitLocked(ds, outbound, pkt[:d.plain(pkt, ihl, res, outbound, now)])
		}
		switch {
		case r >= 0:
			sizes[i] = r
		case s.cur == i:
			sizes[i] = 0 // held or dropped: wireguard-go skips it
			s.free = append(s.free, i)
		}
		s.cur = -1
	}
	n = s.next
	s.bufs, s.sizes, s.free, s.freeHead = nil, nil, s.free[:0], 0
	d.logEvents(outbound)
	return n
}

// readPending returns packets left over from an earlier Read.
func (d *Device) readPending(bufs [][]byte, sizes []int, offset int) int {
	ds := &d.dirs[outbound]
	ds.mu.Lock()
	defer ds.mu.Unlock()
	n := 0
	for n < len(bufs) && n < len(sizes) && ds.head < len(ds.pending) {
		p := ds.pending[ds.head]
		ds.head++
		if offset < 0 || offset > len(bufs[n]) || len(bufs[n])-offset < len(p) {
			d.events[outbound].n[evDropNoRoom].Add(1)
			continue
		}
		sizes[n] = copy(bufs[n][offset:], p)
		n++
	}
	if ds.head == len(ds.pending) {
		ds.pending, ds.head = ds.pending[:0], 0
	}
	ds.npending.Store(int32(len(ds.pending) - ds.head))
	return n
}

// writeSlow is Write from packet from on, under the inbound lock, which it
// holds until the inner device has written its buffers.
func (d *Device) writeSlow(bufs [][]byte, offset, from int, now int64) (int, error) {
	ds := &d.dirs[inbound]
	ds.mu.Lock()
	defer ds.mu.Unlock()
	s := &ds.sink
	s.offset, s.cur, s.write = offset, -1, true
	ds.list = append(ds.list[:0], bufs[:from]...)
	ds.npool = 0
	for i := from; i < len(bufs); i++ {
		b := bufs[i]
		if offset < 0 || offset > len(b) {
			ds.list = append(ds.list, b)
			continue
		}
		if ev, bad := spoofedSource(b[offset:]); bad {
			d.events[inbound].n[ev].Add(1)
			continue
		}
		var r int
		if pkt, ihl, res, slow := classify(b[offset:]); slow {
			r = d.slowLocked(ds, inbound, b[offset:cap(b)], len(b)-offset, now)
		} else {
			r = d.plain(pkt, ihl, res, inbound, now)
		}
		if r >= 0 {
			bufs[i] = b[:offset+r]
			ds.list = append(ds.list, bufs[i])
		}
	}
	d.logEvents(inbound)
	d.observe(inbound, now, len(bufs))
	var err error
	if len(ds.list) > 0 {
		_, err = d.inner.Write(ds.list, offset)
	}
	clear(ds.list)
	if err != nil {
		return 0, err
	}
	return len(bufs), nil
}

// MediaPackets returns how many UDP packets of line s's phone crossed this
// tunnel so far; the daemon compares two readings to tell whether the phone
// is in a call.
func (d *Device) MediaPackets(s int) uint64 {
	if s < 0 || s >= len(d.media[0]) {
		return 0
	}
	return d.media[outbound][s].Load() + d.media[inbound][s].Load()
}

// logEvents logs the first drop of each kind.
func (d *Device) logEvents(dir int) {
	for e := evDropSIPFlood; e < numEvents; e++ {
		if d.events[dir].n[e].Load() != 0 && !d.loggedEv[dir][e].Load() && !d.loggedEv[dir][e].Swap(true) {
			d.log.LogAttrs(context.Background(), slog.LevelInfo,
				"rewrite: first packet dropped for this reason, later ones are only counted",
				slog.String("dir", numplan.Direction(dir).String()), slog.String("reason", e.String()))
		}
	}
}

// slowLocked handles a SIP message or a UDP fragment, pkt = room[:size],
// with ds locked. It returns the packet's new size if it stays where it
// is, or -1 if it was held, dropped, or replaced by what went to ds.sink.
func (d *Device) slowLocked(ds *dirState, dir int, room []byte, size int, now int64) int {
	pkt, ihl, _ := check(room[:size])
	if binary.BigEndian.Uint16(pkt[offFlags:])&(flagMF|fragOffsetMask) == 0 {
		return d.datagramLocked(ds, dir, pkt, room, now)
	}
	if ds.reasm == nil {
		ds.reasm = &reassembler{ev: &d.events[dir].n}
	}
	v, dg := ds.reasm.add(pkt, ihl, now)
	switch v {
	case fragPass:
		// The first fragment of a SIP message passed over a reassembly
		// limit still counts against the flood limit, or fragments would
		// be a way around it.
		if dir == inbound && sipFirstFragment(pkt) && !d.takeSIP(ds, now) {
			return -1
		}
		if d.refuseFragment(dir, pkt, now) {
			return -1
		}
		out, res := mapHeaders(pkt, d.peer, numplan.Direction(dir))
		d.count(dir, res)
		return d.fitLocked(ds, dir, out)
	case fragPassAll:
		if dir == inbound && !d.takeSIPFragments(ds, pkt, dg, now) {
			ds.reasm.release(dg)
			return -1
		}
		refused := d.refuseFragment(dir, pkt, now)
		for k := range dg.pieces {
			refused = refused || d.refuseFragment(dir, dg.piece(k), now)
		}
		if refused {
			ds.reasm.release(dg)
			return -1
		}
		out, res := mapHeaders(pkt, d.peer, numplan.Direction(dir))
		d.count(dir, res)
		limit := d.passMTU(dir)
		keep := len(out) <= limit
		if keep {
			ds.sink.cur = -1 // this fragment keeps its slot
		} else {
			// Too large for the tunnel: cut after the held ones, and
			// its slot is free for them.
			ds.buf = append(ds.buf[:0], out...)
		}
		for k := range dg.pieces {
			f, res := mapHeaders(dg.piece(k), d.peer, numplan.Direction(dir))
			d.count(dir, res)
			d.putFittedLocked(ds, dir, f, limit)
		}
		ds.reasm.release(dg)
		if keep {
			return len(out)
		}
		d.putFittedLocked(ds, dir, ds.buf, limit)
		return -1
	case fragComplete:
		return d.datagramLocked(ds, dir, ds.reasm.whole, nil, now)
	}
	return -1
}

// datagramLocked rewrites the whole SIP datagram pkt, which is in room
// (nil when it was reassembled), with ds locked, and fragments the result
// if it exceeds the MTU. It returns as slowLocked does.
func (d *Device) datagramLocked(ds *dirState, dir int, pkt, room []byte, now int64) int {
	ihl := int(pkt[0]&0x0f) * 4
	if dir == outbound && len(pkt) >= ihl+udpHeaderLen && d.answerLocked(ds, pkt, ihl) {
		return -1
	}
	// Read once, for the flood limit's dialogs, the clock table and the
	// rewrite.
	sip := parsedSIP{err: sipmsg.ErrNotSIP}
	if len(pkt) >= ihl+udpHeaderLen {
		sip = parseSIP(pkt[ihl+udpHeaderLen:])
	}
	if dir == inbound && !d.admitSIP(ds, pkt, &sip, now) {
		return -1
	}
	if dir == outbound {
		// The SDP of a message from a local phone, before its addresses
		// are mapped: the clock rates of what the phone receives.
		d.sdp.learn(&sip, nil)
	}
	// The sender, for the log, before pkt may be mapped in place.
	src := [4]byte(pkt[offSrc : offSrc+4])
	out, res, why := packetOf(ds.buf, pkt, d.peer, numplan.Direction(dir), d.third.Load(), &sip)
	if why != 0 {
		d.refusals[dir][min(why, sipmsg.NumReasons)].Add(1)
	}
	if res == SIPRefused {
		d.count(dir, res)
		reason := why.String()
		if why == 0 {
			// Parsed, but its UDP length was wrong or it would not fit.
			reason = "not-rewritable"
		}
		d.sampleRefused(dir, now, src, pkt, reason)
		return -1
	}
	if dir == inbound {
		if field, bad := impersonation(out, res, d.notPeer); bad {
			d.events[inbound].n[evDropImpersonation].Add(1)
			d.sampleRefused(dir, now, src, pkt, "impersonation:"+field)
			return -1
		}
		if d.anonymousLocked(ds, out, &sip) {
			return -1
		}
	} else if id, ok := d.dialogs.idOf(&sip); ok {
		// What a local phone sends makes the dialogs the peer's
		// messages may then use past the flood limit (the rewrite maps
		// no field the dialog is known by).
		d.dialogs.outbound(&id, now)
	}
	if res == SIPRewritten {
		// Keep the buffer Packet grew, so that the next message of this
		// size does not allocate.
		ds.buf = out[:0]
	} else if room != nil {
		// out is pkt, in room; the sink may write into room, so work on a
		// copy.
		ds.buf = append(ds.buf[:0], out...)
		out = ds.buf
	}
	if dir == inbound {
		// The message as it came, its media addresses mapped as they
		// were in out: in this node's plan.
		d.sdp.learn(&sip, func(a [4]byte) ([4]byte, bool) { return numplan.FromWire(a, d.peer) })
	}
	if mtu := d.dirMTU(dir); len(out) > mtu {
		d.count(dir, res)
		d.putFittedLocked(ds, dir, out, mtu)
		return -1
	}
	if room == nil {
		d.count(dir, res)
		ds.sink.put(out)
		return -1
	}
	if len(out) > len(room) {
		// No room to grow (a Read with small buffers): addresses only,
		// unless the message holds addresses of the plan.
		if (tunnelMap{d.peer, numplan.Direction(dir), d.third.Load()}).mustDrop(pkt[ihl+udpHeaderLen:]) {
			d.count(dir, SIPRefused)
			d.sampleRefused(dir, now, src, pkt, "no-room")
			return -1
		}
		out, _ = mapHeaders(pkt, d.peer, numplan.Direction(dir))
		d.count(dir, SIPTooBig)
		return len(out)
	}
	d.count(dir, res)
	return copy(room, out)
}

// admitSIP decides whether the whole SIP datagram pkt from the peer passes
// the flood limit: a message of a dialog a local phone is in passes under
// that dialog's own limit, anything else takes a token from the shared one
// (dialog.go). A drop is counted, and sampled in the log. ds is the inbound
// state, locked.
func (d *Device) admitSIP(ds *dirState, pkt []byte, sip *parsedSIP, now int64) bool {
	if id, ok := d.dialogs.idOf(sip); ok {
		switch d.dialogs.inbound(&id, now) {
		case dlgPass:
			d.inDialog.Add(1)
			return true
		case dlgOverLimit:
			d.dialogFlood.Add(1)
			d.sampleRefused(inbound, now, [4]byte(pkt[offSrc:offSrc+4]), pkt, "sip-dialog-flood")
			return false
		}
	}
	if d.takeSIP(ds, now) {
		return true
	}
	d.sampleRefused(inbound, now, [4]byte(pkt[offSrc:offSrc+4]), pkt, "sip-flood")
	return false
}

// takeSIP takes a token from the SIP flood limit of the peer, or counts a
// drop. ds is the inbound state, locked.
func (d *Device) takeSIP(ds *dirState, now int64) bool {
	if !ds.bucketInit {
		ds.bucket, ds.bucketInit = tokenbucket.Full(sipBurst, d.wall(now)), true
	}
	if ds.bucket.Take(d.wall(now), sipRate, sipBurst, 1) {
		return true
	}
	d.events[inbound].n[evDropSIPFlood].Add(1)
	return false
}

// takeSIPFragments is takeSIP for fragments about to pass unreassembled:
// pkt and those held in dg. Only a SIP first fragment costs a token; if
// there is none, all of them are dropped (counted as the flood) since the
// rest is useless without it.
func (d *Device) takeSIPFragments(ds *dirState, pkt []byte, dg *datagram, now int64) bool {
	first := sipFirstFragment(pkt)
	for k := range dg.pieces {
		first = first || sipFirstFragment(dg.piece(k))
	}
	if !first || d.takeSIP(ds, now) {
		return true
	}
	d.events[inbound].n[evDropSIPFlood].Add(uint64(len(dg.pieces)))
	return false
}

// sipFirstFragment reports whether the checked fragment pkt is the first of
// a UDP datagram that carries SIP.
func sipFirstFragment(pkt []byte) bool {
	ihl := int(pkt[0]&0x0f) * 4
	return pkt[offProto] == protoUDP && binary.BigEndian.Uint16(pkt[offFlags:])&fragOffsetMask == 0 &&
		len(pkt) >= ihl+udpHeaderLen && udpSIP(pkt[ihl:])
}

// fitLocked sends the checked, mapped packet out (which may lie in the
// slot being handled) in fragments if it is a packet to the peer larger
// than the tunnel MTU, with ds locked. Packets from the peer that pass
// unreassembled are left as they came: the kernel forwards them to the
// phone like any other.
// It returns as slowLocked does: out's size if it stays where it is.
//
// On the way out, Don't Fragment is not obeyed: the tunnel is one hop to
// the far Pi, the fragments cross it inside WireGuard and the far phone
// reassembles them; refusing instead would cost the phone a retransmission
// (its kernel learns the smaller MTU from the ICMP only after losing the
// datagram), and the first INVITE of a call must get through the first
// time. All the sender loses is learning an MTU it does not need to know.
func (d *Device) fitLocked(ds *dirState, dir int, out []byte) int {
	limit := d.passMTU(dir)
	if len(out) <= limit {
		return len(out)
	}
	// The sink may write the first fragment where out lies.
	ds.buf = append(ds.buf[:0], out...)
	d.putFittedLocked(ds, dir, ds.buf, limit)
	return -1
}

// passMTU is the largest packet passed in direction dir without being
// rewritten: the tunnel MTU towards the peer, no limit towards the phones.
func (d *Device) passMTU(dir int) int {
	if dir == outbound {
		return d.wire()
	}
	return maxPacket
}

// putFittedLocked hands the checked IPv4 packet (or fragment) pkt to the
// sink, cut into fragments of at most mtu bytes. pkt must not lie in the
// sink's buffers.
func (d *Device) putFittedLocked(ds *dirState, dir int, pkt []byte, mtu int) {
	if len(pkt) <= mtu {
		ds.sink.put(pkt)
		return
	}
	sp := newSplitter(pkt, mtu)
	if cap(ds.frag) < mtu {
		ds.frag = make([]byte, max(mtu, minMTU))
	}
	for k := range sp.n {
		n := sp.frag(k, ds.frag[:cap(ds.frag)])
		ds.sink.put(ds.frag[:n])
	}
	d.events[dir].n[evRefragmented].Add(uint64(sp.n))
}

// SetMTU sets the tunnel MTU: the largest packet Read hands to WireGuard,
// which MTU reports. Larger packets from the phones are sent as fragments
// (fitLocked), so the TUN and the links from the phone port to it can stay
// at the phone port's 1500 bytes and a phone's full-size datagram, Don't
// Fragment and all, reaches the rewriter instead of being refused by the
// kernel. n <= 0 goes back to the inner device's MTU.
func (d *Device) SetMTU(n int) {
	if n > 0 {
		n = max(n, minMTU)
	}
	d.wireMTU.Store(int32(min(max(n, 0), maxPacket)))
}

// dirMTU is the largest packet that leaves in direction dir: the tunnel MTU
// towards the peer, the TUN's own towards the phones.
func (d *Device) dirMTU(dir int) int {
	if dir == outbound {
		return d.wire()
	}
	return d.mtu()
}

// mtu is the inner device's MTU, or no limit if it has none.
func (d *Device) mtu() int {
	m, err := d.inner.MTU()
	if err != nil || m <= 0 {
		return maxPacket
	}
	return max(m, minMTU)
}

// sink takes the packets the slow path makes: on Read, into free slots of
// the caller's buffers (cur, the slot of the packet being handled, then
// those of packets held or dropped earlier in the batch, then those past
// what the inner device filled) and then the pending queue; on Write, into
// buffers of the pool added to the list for the inner device.
type sink struct {
	ds     *dirState
	write  bool
	bufs   [][]byte
	sizes  []int
	offset int
	next   int
	cur    int
	// free is the slots of packets held or dropped earlier in the batch;
	// those before freeHead are taken.
	free     []int
	freeHead int
}

func (s *sink) put(p []byte) {
	ds := s.ds
	if s.write {
		if ds.npool == len(ds.pool) {
			ds.pool = append(ds.pool, nil)
		}
		b := ds.pool[ds.npool]
		if cap(b) < s.offset+len(p) {
			b = make([]byte, s.offset+max(len(p), 2048))
			ds.pool[ds.npool] = b
		}
		ds.npool++
		b = b[:s.offset+len(p)]
		copy(b[s.offset:], p)
		ds.list = append(ds.list, b)
		return
	}
	// Earlier free slots first, so that fragments leave in order.
	for s.freeHead < len(s.free) {
		j := s.free[s.freeHead]
		s.freeHead++
		if len(s.bufs[j])-s.offset >= len(p) {
			s.sizes[j] = copy(s.bufs[j][s.offset:], p)
			return
		}
	}
	if s.cur >= 0 && len(s.bufs[s.cur])-s.offset >= len(p) {
		s.sizes[s.cur] = copy(s.bufs[s.cur][s.offset:], p)
		s.cur = -1
		return
	}
	for s.next < len(s.bufs) && s.next < len(s.sizes) {
		j := s.next
		s.next++
		if s.offset <= len(s.bufs[j]) && len(s.bufs[j])-s.offset >= len(p) {
			s.sizes[j] = copy(s.bufs[j][s.offset:], p)
			return
		}
		s.sizes[j] = 0
	}
	ds.queueLocked(p)
}

// Counts are the packets of one direction by what was done with them (see
// Result), what reassembly did, and what was dropped, by reason. A
// reassembled datagram counts once, by its Result; the fragments it was made
// of count in Reassembly.Held.
type Counts struct {
	Packets       uint64 // all of the results below
	Plain         uint64
	SIPRewritten  uint64
	SIPUnchanged  uint64
	SIPUnparsable uint64
	SIPTooBig     uint64
	SIPOverTCP    uint64
	Fragments     uint64 // passed with addresses mapped, payload as it was
	BadTransport  uint64
	NonIPv4       uint64
	Malformed     uint64
	// SIPRefused were dropped: sipmsg refused them and they held an
	// address of our plan.
	SIPRefused uint64
	// SIPPeerOffline are initial INVITEs answered here with a 480 because
	// the peer was offline, and SIPOfflineACK the ACKs of those 480s;
	// neither was sent.
	SIPPeerOffline uint64
	SIPOfflineACK  uint64
	// SIPAnonymousRefused and SIPAnonymousRedirected are initial INVITEs
	// from the peer that withheld the caller's identity, answered here
	// with a 433 or a 302 by the anonymous-call policy (inbound; also in
	// SIPRefusals as "anonymous-refused" and "anonymous-redirected", so
	// that they show with the other reasons); SIPAnonymousACK the ACKs of
	// those answers; SIPAnswerToPeer the answers sent (outbound). None
	// reached a phone.
	SIPAnonymousRefused    uint64
	SIPAnonymousRedirected uint64
	SIPAnonymousACK        uint64
	SIPAnswerToPeer        uint64

	// SIPRefusals counts the messages sipmsg refused (SIPUnparsable and
	// SIPRefused) by its reason ("bad-content-length"); nil when there
	// were none.
	SIPRefusals map[string]uint64
	// OfflineReplyFailed are 480s the inner device would not take: their
	// INVITEs were sent on instead.
	OfflineReplyFailed uint64
	// AnonymousReplyFailed are 433s and 302s that could not be sent (the
	// INVITE was not delivered either).
	AnonymousReplyFailed uint64
	// SIPInDialog are SIP messages from the peer in a dialog a local
	// phone is in, which passed without the flood limit's token
	// (dialog.go); inbound only.
	SIPInDialog uint64
	// RTPUntracked are RTP packets whose flow was not measured (Calls)
	// because the flow table was full of live flows: more streams than
	// maxFlows on one tunnel. They passed like any other.
	RTPUntracked uint64

	Reassembly ReassemblyCounts
	Dropped    DropCounts
}

// ReassemblyCounts are the fragments of UDP datagrams the rewriter handled.
type ReassemblyCounts struct {
	Held         uint64 // fragments held for reassembly
	Datagrams    uint64 // datagrams reassembled
	Refragmented uint64 // fragments sent after rewriting a datagram over the MTU
	Duplicates   uint64 // fragments that repeated one already held (ignored)
	// OverLimit is fragments not held because a reassembly limit was
	// reached: passed as they were (also counted in Fragments), their SIP
	// not rewritten, or, for the first fragment of a SIP message holding
	// plan addresses, dropped (counted in SIPRefused).
	OverLimit uint64
}

// DropCounts are the packets dropped, by reason.
type DropCounts struct {
	SIPFlood        uint64 // SIP from the peer over the rate limit
	FragmentOverlap uint64 // fragments of a datagram with overlapping fragments
	FragmentTimeout uint64 // fragments of a datagram not completed in time
	FragmentTooBig  uint64 // fragments reaching past 65535 bytes
	NoRoom          uint64 // fragments that did not fit the caller's buffer
	// SourceOurs are packets from the peer whose source was in our own
	// plan (wire 10.254.s.p, our 10.0.s.p): the peer posing as one of our
	// phones or as the Pi.
	SourceOurs uint64
	// SourceForeign are packets from the peer whose source was neither
	// its own (10.255.s.p) nor ours; WireGuard's allowed IPs admit none
	// today, so a count here means they changed.
	SourceForeign uint64
	// SIPImpersonation are SIP messages from the peer that named one of
	// our own lines, or another node's, where the peer may only name
	// itself (From, Contact, P-Asserted-Identity, ...:
	// sipmsg.Impersonation), or, not parsable, held such an address
	// anywhere.
	SIPImpersonation uint64
	// SIPDialogFlood are SIP messages from the peer in a known dialog
	// over that dialog's own limit (dialog.go): the peer flooding a call
	// it is in.
	SIPDialogFlood uint64
}

// LogValue logs the non-zero counts.
func (c Counts) LogValue() slog.Value {
	var attrs []slog.Attr
	for r := range numResults {
		if n := c.get(r); n != 0 {
			attrs = append(attrs, slog.Uint64(r.String(), n))
		}
	}
	for e := range numEvents {
		if n := *c.event(e); n != 0 {
			attrs = append(attrs, slog.Uint64(e.String(), n))
		}
	}
	if c.SIPInDialog != 0 {
		attrs = append(attrs, slog.Uint64("sip-in-dialog", c.SIPInDialog))
	}
	if c.Dropped.SIPDialogFlood != 0 {
		attrs = append(attrs, slog.Uint64("drop-sip-dialog-flood", c.Dropped.SIPDialogFlood))
	}
	if len(c.SIPRefusals) > 0 {
		var refused []slog.Attr
		for _, r := range refusalNames() {
			if n := c.SIPRefusals[r]; n != 0 {
				refused = append(refused, slog.Uint64(r, n))
			}
		}
		attrs = append(attrs, slog.Attr{Key: "sip-refusals", Value: slog.GroupValue(refused...)})
	}
	return slog.GroupValue(attrs...)
}

func (c *Counts) field(r Result) *uint64 {
	switch r {
	case Plain:
		return &c.Plain
	case SIPRewritten:
		return &c.SIPRewritten
	case SIPUnchanged:
		return &c.SIPUnchanged
	case SIPUnparsable:
		return &c.SIPUnparsable
	case SIPTooBig:
		return &c.SIPTooBig
	case SIPOverTCP:
		return &c.SIPOverTCP
	case Fragment:
		return &c.Fragments
	case BadTransport:
		return &c.BadTransport
	case NonIPv4:
		return &c.NonIPv4
	case Malformed:
		return &c.Malformed
	case SIPRefused:
		return &c.SIPRefused
	case SIPPeerOffline:
		return &c.SIPPeerOffline
	case SIPOfflineACK:
		return &c.SIPOfflineACK
	case SIPAnonymousRefused:
		return &c.SIPAnonymousRefused
	case SIPAnonymousRedirected:
		return &c.SIPAnonymousRedirected
	case SIPAnonymousACK:
		return &c.SIPAnonymousACK
	case SIPAnswerToPeer:
		return &c.SIPAnswerToPeer
	}
	panic("rewrite: unknown Result " + r.String())
}

func (c *Counts) event(e event) *uint64 {
	switch e {
	case evFragHeld:
		return &c.Reassembly.Held
	case evReassembled:
		return &c.Reassembly.Datagrams
	case evRefragmented:
		return &c.Reassembly.Refragmented
	case evFragDuplicate:
		return &c.Reassembly.Duplicates
	case evFragOverLimit:
		return &c.Reassembly.OverLimit
	case evDropSIPFlood:
		return &c.Dropped.SIPFlood
	case evDropFragOverlap:
		return &c.Dropped.FragmentOverlap
	case evDropFragTimeout:
		return &c.Dropped.FragmentTimeout
	case evDropFragTooBig:
		return &c.Dropped.FragmentTooBig
	case evDropNoRoom:
		return &c.Dropped.NoRoom
	case evDropSourceOurs:
		return &c.Dropped.SourceOurs
	case evDropSourceForeign:
		return &c.Dropped.SourceForeign
	case evDropImpersonation:
		return &c.Dropped.SIPImpersonation
	case evOfflineReplyFailed:
		return &c.OfflineReplyFailed
	case evAnonReplyFailed:
		return &c.AnonymousReplyFailed
	}
	panic("rewrite: unknown event " + e.String())
}

func (c Counts) get(r Result) uint64 { return *c.field(r) }

// Stats is a snapshot of a Device's counters.
type Stats struct {
	Outbound Counts // read from the TUN, leaving through the tunnel
	Inbound  Counts // arriving from the tunnel, written to the TUN
}

// Stats returns the counters so far. Each counter is read atomically, the set
// of them is not: a snapshot taken while packets flow may be off by the
// packets in flight.
func (d *Device) Stats() Stats {
	var s Stats
	for dir, c := range []*Counts{&s.Outbound, &s.Inbound} {
		for r := range numResults {
			var n uint64
			if r == Plain {
				n = d.hot[dir].plain.Load()
			} else {
				n = d.counts[dir].n[r].Load()
			}
			*c.field(r) = n
			c.Packets += n
		}
		for e := range numEvents {
			*c.event(e) = d.events[dir].n[e].Load()
		}
		for r, name := range refusalNames() {
			c.addRefusal(name, d.refusals[dir][r+1].Load())
		}
		c.RTPUntracked = d.hot[dir].untracked.Load()
		c.addRefusal("anonymous-refused", c.SIPAnonymousRefused)
		c.addRefusal("anonymous-redirected", c.SIPAnonymousRedirected)
	}
	s.Inbound.SIPInDialog = d.inDialog.Load()
	s.Inbound.Dropped.SIPDialogFlood = d.dialogFlood.Load()
	return s
}

// addRefusal records n messages refused for reason name, if there were any.
func (c *Counts) addRefusal(name string, n uint64) {
	if n == 0 {
		return
	}
	if c.SIPRefusals == nil {
		c.SIPRefusals = map[string]uint64{}
	}
	c.SIPRefusals[name] = n
}

// refusalNames are the names Counts.SIPRefusals uses, for sipmsg's
// Reasons 1, 2, ... in order, then "other" for an error that is none.
func refusalNames() []string {
	names := make([]string, 0, sipmsg.NumReasons)
	for r := sipmsg.Reason(1); r < sipmsg.NumReasons; r++ {
		names = append(names, r.String())
	}
	return append(names, "other")
}

// File returns the inner device's file.
func (d *Device) File() *os.File { return d.inner.File() }

// MTU returns the tunnel MTU (SetMTU), or the inner device's MTU if none
// was set: what WireGuard pads up to. A packet from a phone over it, or a
// SIP message that grows past it when rewritten, is sent as fragments.
func (d *Device) MTU() (int, error) {
	if m := d.wireMTU.Load(); m > 0 {
		return int(m), nil
	}
	return d.inner.MTU()
}

// Name returns the inner device's name.
func (d *Device) Name() (string, error) { return d.inner.Name() }

// Events returns the inner device's events.
func (d *Device) Events() <-chan tun.Event { return d.inner.Events() }

// BatchSize returns the inner device's batch size.
func (d *Device) BatchSize() int { return d.inner.BatchSize() }

// Close closes the inner device once and logs the counters; later calls
// return the first call's error.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.closeErr = d.inner.Close()
		s := d.Stats()
		d.log.Info("rewrite: closed", "outbound", s.Outbound, "inbound", s.Inbound)
	})
	return d.closeErr
}
