package rewrite

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/peerline/peerline/pkg/sipmsg"
)

// Call quality is measured on the RTP packets the rewriter maps anyway: per
// flow (a local phone's address and port and the remote one's, both in this
// node's plan) and per direction, packets, loss (RFC 3550 A.1 and A.3) and
// interarrival jitter (A.8). A table per direction, so that the reading and
// the writing goroutine never wait on each other; one map lookup and a few
// additions per packet, no allocation once a flow is in the table.
const (
	// maxFlows bounds the flows tracked per direction of a tunnel: two
	// hundred calls, each one flow per direction (RTCP is not counted),
	// with room for streams a re-INVITE moved. When it is full, the flow
	// idle longest makes room if it has been idle for flowEvictIdle;
	// otherwise the new flow is not measured (flowTable.lookupLocked).
	maxFlows = 256
	// flowEvictIdle is how long a flow must have been quiet before a new
	// one may take its place in a full table. A stream sends every 20 ms
	// or so; one quiet this long has ended or is on hold. Without it, more
	// streams than maxFlows would evict each other on every packet, each
	// eviction a scan of the table.
	flowEvictIdle = 2 * time.Second
	// flowExpiry is how long a flow that has gone quiet still shows in
	// Calls: long enough to look at the quality of a call just ended.
	flowExpiry = 5 * time.Minute

	// RFC 3550 A.1.
	maxDropout    = 3000
	maxMisorder   = 100
	minSequential = 2
	seqMod        = 1 << 16

	rtpHeaderLen = 12
	// recheckClock is how many packets of a payload type whose clock rate
	// is unknown pass before the SDP table is asked again: the answer
	// carrying the rtpmap can arrive after the first media (early media).
	recheckClock = 64
)

// flowKey is a flow in this node's plan: local and remote are
// address<<16 | port.
type flowKey struct{ local, remote uint64 }

func addrPort(e uint64) netip.AddrPort {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], uint32(e>>16))
	return netip.AddrPortFrom(netip.AddrFrom4(a), uint16(e))
}

// rtpFlow is one RTP stream, one way. Its fields are in two halves of 64
// bytes, and the whole is 128 bytes, so that in the table (whose arrays
// start on a cache line: their sizes are powers of two times 128) a flow
// takes exactly two cache lines: on a loaded machine a packet finds them
// out of the cache, and each line is one more wait on memory. The first
// half is what every packet reads first (the key) and counts; the second
// the jitter state every voice packet updates and what only Calls reads.
type rtpFlow struct {
	key      flowKey
	last     int64 // nanoseconds on the Device's clock
	packets  uint64
	received uint64 // RFC 3550 A.1, this SSRC
	ssrc     uint32
	// RFC 3550 A.1 source state.
	cycles    uint32
	badSeq    uint32
	maxSeq    uint16
	pt        uint8
	started   bool
	probation uint8

	// RFC 3550 A.8 state, in nanoseconds. Jitter is kept times 16 as in
	// the RFC's integer version.
	clockPT  uint8
	clockSet bool
	recheck  uint8
	transit  bool // lastArr and lastTS are set

	nsPerTS  float64
	lastArr  int64
	jitter16 int64
	lastTS   uint32
	clock    uint32 // clock rate of clockPT; 0 when unknown or events

	first   int64 // nanoseconds on the Device's clock
	baseSeq uint32
	_       uint32 // 128 bytes on 32-bit too (TestHotLayout)
	// Expected and received packets of earlier SSRCs of this flow (a phone
	// restarts its stream on re-INVITE).
	accExpected, accReceived uint64
}

// flowTable holds the flows of one direction, indexed by an open-addressing
// hash table of fixed size (linear probing, at most a quarter full): the
// lookup is the whole per-packet cost of the table, and a general map's
// hashing of the 16-byte key costs more than the rest of the RTP path.
type flowTable struct {
	// slots holds 1 + an index into flows, 0 for an empty slot. Made
	// with the first flow: a tunnel that carries no call (most of 253)
	// keeps none.
	slots *[flowSlots]uint16
	flows []rtpFlow
	// noEvictUntil is, when the table is full, the earliest time any flow
	// in it may be evicted (its oldest flow's last packet plus
	// flowEvictIdle): until then a new flow costs one probe, not a scan.
	noEvictUntil int64
}

const (
	flowBits  = 10
	flowSlots = 1 << flowBits
)

// remove takes k out of the index, moving later entries of its probe run
// back so that every entry stays reachable from its hash.
func (t *flowTable) remove(k flowKey) {
	if t.slots == nil {
		return
	}
	i := flowHash(k)
	for ; t.slots[i] != 0; i = (i + 1) & (flowSlots - 1) {
		if t.flows[t.slots[i]-1].key == k {
			break
		}
	}
	if t.slots[i] == 0 {
		return
	}
	t.slots[i] = 0
	for j := (i + 1) & (flowSlots - 1); t.slots[j] != 0; j = (j + 1) & (flowSlots - 1) {
		h := flowHash(t.flows[t.slots[j]-1].key)
		// The entry at j may move to the hole at i unless its home h
		// lies cyclically in (i, j].
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			t.slots[i], t.slots[j] = t.slots[j], 0
			i = j
		}
	}
}

// expected is RFC 3550 A.3's expected count for the current source.
func (f *rtpFlow) expected() uint64 {
	if f.received == 0 {
		return 0
	}
	extMax := f.cycles + uint32(f.maxSeq)
	return uint64(extMax-f.baseSeq) + 1
}

// staticClock is the RTP clock rate of the static payload types of RFC
// 3551 §6; 0 means dynamic or unassigned. G.722 is 8000 by that RFC's
// erratum-turned-rule, although it samples at 16 kHz.
var staticClock = [128]uint32{
	0: 8000, 3: 8000, 4: 8000, 5: 8000, 6: 16000, 7: 8000, 8: 8000, 9: 8000,
	10: 44100, 11: 44100, 12: 8000, 13: 8000, 14: 90000, 15: 8000,
	16: 11025, 17: 22050, 18: 8000,
	25: 90000, 26: 90000, 28: 90000, 31: 90000, 32: 90000, 33: 90000, 34: 90000,
}

// StreamStats is the quality of one direction of a call's RTP.
type StreamStats struct {
	// Packets is every RTP packet seen this way.
	Packets     uint64
	SSRC        uint32
	PayloadType uint8
	// ClockRate is that of PayloadType, from RFC 3551 or the call's SDP;
	// 0 when unknown (then Jitter is not measured) or for DTMF events.
	ClockRate uint32
	// Expected is RFC 3550 A.3's count from sequence numbers, over every
	// SSRC the flow had; Lost is Expected less the packets received, and
	// can be negative when duplicates outnumber losses.
	Expected uint64
	Lost     int64
	// Jitter is RFC 3550 A.8's interarrival jitter, measured where the
	// rewriter sees the packet: for Received, after the Internet; for
	// Sent, between the phone and this node.
	Jitter      time.Duration
	First, Last time.Time
}

// CallStats is the RTP between a local phone and a remote one through this
// tunnel. Addresses are in this node's plan: Local is 10.0.s.p, Remote
// 10.i.s.p.
type CallStats struct {
	Peer   uint8
	Line   int // s of the local phone's address
	Local  netip.AddrPort
	Remote netip.AddrPort
	// Sent is local to remote (read from the TUN), Received the other way.
	Sent, Received StreamStats
}

// Since is when the first media packet of the call, either way, was seen.
func (c CallStats) Since() time.Time {
	switch {
	case c.Sent.Packets == 0:
		return c.Received.First
	case c.Received.Packets == 0 || c.Sent.First.Before(c.Received.First):
		return c.Sent.First
	}
	return c.Received.First
}

// LastPacket is when the latest media packet of the call was seen.
func (c CallStats) LastPacket() time.Time {
	if c.Sent.Last.After(c.Received.Last) {
		return c.Sent.Last
	}
	return c.Received.Last
}

// Calls returns the RTP flows seen in the last flowExpiry, a call per pair
// of local and remote address and port, ordered by line. Taking it costs
// allocations, none of them under a table's lock: each direction's table
// is locked only to copy its live flows out (snapshotLocked), so the RTP
// path never waits on the allocator or the map. Call it when a user asks,
// not per packet.
func (d *Device) Calls() []CallStats {
	now := d.now()
	byKey := map[flowKey]*CallStats{}
	var keys []flowKey
	var snap []rtpFlow
	for dir := range 2 {
		mu, t := &d.hot[dir].mu, &d.flows[dir]
		for {
			mu.Lock()
			n := len(t.flows)
			if n <= cap(snap) {
				snap = t.snapshotLocked(snap[:0], now)
				mu.Unlock()
				break
			}
			mu.Unlock()
			// Sized by the table (most tunnels carry a call or none),
			// allocated with the lock let go.
			snap = make([]rtpFlow, 0, n+4)
		}
		for i := range snap {
			f := &snap[i]
			c, ok := byKey[f.key]
			if !ok {
				l := addrPort(f.key.local)
				c = &CallStats{Peer: d.peer, Line: int(l.Addr().As4()[2]), Local: l, Remote: addrPort(f.key.remote)}
				byKey[f.key] = c
				keys = append(keys, f.key)
			}
			s := &c.Received
			if dir == outbound {
				s = &c.Sent
			}
			*s = d.streamStats(f)
		}
	}
	calls := make([]CallStats, 0, len(keys))
	for _, k := range keys {
		calls = append(calls, *byKey[k])
	}
	slices.SortFunc(calls, func(a, b CallStats) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), a.Local.Compare(b.Local), a.Remote.Compare(b.Remote))
	})
	return calls
}

// snapshotLocked appends to dst the flows seen in the last flowExpiry. It
// allocates nothing when dst has room for len(t.flows), so the lock is
// held only for the copy.
func (t *flowTable) snapshotLocked(dst []rtpFlow, now int64) []rtpFlow {
	for i := range t.flows {
		if now-t.flows[i].last <= int64(flowExpiry) {
			dst = append(dst, t.flows[i])
		}
	}
	return dst
}

func (d *Device) streamStats(f *rtpFlow) StreamStats {
	exp := f.accExpected + f.expected()
	rcv := f.accReceived + f.received
	s := StreamStats{
		Packets:     f.packets,
		SSRC:        f.ssrc,
		PayloadType: f.pt,
		Expected:    exp,
		Lost:        int64(exp) - int64(rcv),
		Jitter:      time.Duration(f.jitter16 >> 4),
		First:       d.wall(f.first),
		Last:        d.wall(f.last),
	}
	if f.clockPT == f.pt {
		s.ClockRate = f.clock
	}
	return s
}

// sdpTable remembers, for the media endpoints the SIP crossing a tunnel
// announced (c= address and m= port, in this node's plan), the clock rate
// of each dynamic payload type (a=rtpmap). A small ring: the newest
// maxSDP endpoints of both directions.
type sdpTable struct {
	mu sync.Mutex
	// e is made with the first endpoint learnt: a tunnel that carries no
	// call keeps none.
	e    *[maxSDP]sdpMedia
	next int
}

const (
	maxSDP    = 64
	maxSDPPTs = 8
)

type sdpMedia struct {
	ep  uint64 // address<<16 | port; 0 when unused
	n   int
	pts [maxSDPPTs]sdpPT
}

type sdpPT struct {
	pt    uint8
	clock uint32 // 0 for telephone-event: its timestamps stand still
}

// clock returns the clock rate of pt at ep, 0 if unknown.
func (t *sdpTable) clock(ep uint64, pt uint8) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.e == nil {
		return 0
	}
	for i := range t.e {
		m := &t.e[i]
		if m.ep != ep {
			continue
		}
		for _, p := range m.pts[:m.n] {
			if p.pt == pt {
				return p.clock
			}
		}
	}
	return 0
}

// learn reads the audio media of the SDP body of a SIP message, as sipmsg
// finds it. toLocal maps its media addresses into this node's plan (nil
// when they are in it already).
func (t *sdpTable) learn(sip *parsedSIP, toLocal func([4]byte) ([4]byte, bool)) {
	if sip.err != nil {
		return
	}
	body := sip.msg.SDP()
	if body == nil {
		return
	}
	var (
		sessionAddr, mediaAddr uint32
		port                   uint16
		inMedia, inAudio       bool
		m                      sdpMedia
	)
	flush := func() {
		a := mediaAddr
		if a == 0 {
			a = sessionAddr
		}
		if inAudio && a != 0 && port != 0 && m.n > 0 {
			m.ep = uint64(a)<<16 | uint64(port)
			t.store(m)
		}
	}
	lines := sipmsg.LinesOf(body)
	for line, ok := lines.Next(); ok; line, ok = lines.Next() {
		switch {
		case hasPrefix(line, "m="):
			flush()
			m, mediaAddr, port, inMedia, inAudio = sdpMedia{}, 0, 0, true, false
			if rest, ok := cutPrefix(line, "m=audio "); ok {
				p, _, ok := parseUint(rest, 65535)
				inAudio, port = ok, uint16(p)
			}
		case hasPrefix(line, "c="):
			if rest, ok := cutPrefix(line, "c=IN IP4 "); ok {
				a, ok := parseIPv4(rest)
				if !ok {
					a = 0
				} else if toLocal != nil {
					var b [4]byte
					binary.BigEndian.PutUint32(b[:], a)
					b, _ = toLocal(b)
					a = binary.BigEndian.Uint32(b[:])
				}
				if !inMedia {
					sessionAddr = a
				} else {
					mediaAddr = a
				}
			}
		case inAudio && hasPrefix(line, "a=rtpmap:"):
			rest, _ := cutPrefix(line, "a=rtpmap:")
			pt, rest, ok := parseUint(rest, 127)
			if !ok || len(rest) == 0 || rest[0] != ' ' || m.n == maxSDPPTs {
				continue
			}
			name, rate, found := cutByte(rest[1:], '/')
			if !found {
				continue
			}
			r, _, ok := parseUint(rate, 1<<24)
			if !ok || r == 0 {
				continue
			}
			if equalFold(name, "telephone-event") {
				r = 0
			}
			m.pts[m.n] = sdpPT{pt: uint8(pt), clock: uint32(r)}
			m.n++
		}
	}
	flush()
}

func (t *sdpTable) store(m sdpMedia) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.e == nil {
		t.e = new([maxSDP]sdpMedia)
	}
	for i := range t.e {
		if t.e[i].ep == m.ep {
			t.e[i] = m
			return
		}
	}
	t.e[t.next] = m
	t.next = (t.next + 1) % maxSDP
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

func cutPrefix(b []byte, p string) ([]byte, bool) {
	if !hasPrefix(b, p) {
		return b, false
	}
	return b[len(p):], true
}

func cutByte(b []byte, c byte) (before, after []byte, found bool) {
	for i, x := range b {
		if x == c {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// parseUint reads a decimal number of at most limit at the start of b.
func parseUint(b []byte, limit uint64) (n uint64, rest []byte, ok bool) {
	i := 0
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		n = n*10 + uint64(b[i]-'0')
		if n > limit {
			return 0, b, false
		}
		i++
	}
	return n, b[i:], i > 0
}

// parseIPv4 reads a dotted quad at the start of b (what follows, such as
// a TTL, is ignored).
func parseIPv4(b []byte) (uint32, bool) {
	var a uint32
	for k := range 4 {
		o, rest, ok := parseUint(b, 255)
		if !ok {
			return 0, false
		}
		a = a<<8 | uint32(o)
		b = rest
		if k < 3 {
			if len(b) == 0 || b[0] != '.' {
				return 0, false
			}
			b = b[1:]
		}
	}
	return a, true
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
