package rewrite

import (
	"encoding/binary"
	"sync/atomic"
	"time"
)

// Reassembly limits, per direction of one tunnel. A SIP message that needs
// fragments is a few kB (an INVITE offering many codecs, long headers):
// two to five fragments at the tunnel MTU. The limits leave room for every
// line of a node doing that at once, retransmissions included, while one
// hostile source can hold at most maxPerSource datagrams and nobody more
// than maxHeldBytes.
const (
	// fragTimeout is far shorter than Linux's 30 s: fragments of one
	// datagram leave a phone back to back, and SIP retransmits a lost message
	// as a new datagram after 500 ms anyway, so an incomplete datagram older
	// than this will never complete.
	fragTimeout         = 3 * time.Second
	maxDatagrams        = 32
	maxPerSource        = 8
	maxHeldBytes        = 256 << 10
	maxFragsPerDatagram = 64
	// keepDataCap is the largest fragment store kept for reuse after a
	// datagram is done with; bigger ones go back to the garbage collector.
	keepDataCap = 8 << 10
	// minMTU is the smallest MTU IPv4 allows (RFC 791): a 60-byte header
	// and 8 bytes of payload.
	minMTU = 68
)

// fragKey identifies the fragments of one datagram (RFC 791).
type fragKey struct {
	src, dst [4]byte
	id       uint16
	proto    uint8
}

// fragState is what is done with the fragments of a datagram.
type fragState uint8

const (
	// collecting holds fragments until the datagram is whole.
	collecting fragState = iota
	// passing sends fragments on with their addresses mapped and the
	// payload as it was: the datagram is not SIP, or a limit was reached.
	passing
	// dropping discards fragments: the datagram had overlapping fragments
	// (RFC 5722 does this for IPv6, and overlaps are a known way to make
	// two readers see two different datagrams) or did not fit in 64 KiB.
	dropping
)

// fragPiece is one held fragment: its bytes are data[pos:pos+n], and its
// payload is the datagram's payload [start, end).
type fragPiece struct {
	pos, n     int32
	start, end int32
}

// datagram is a datagram being reassembled.
type datagram struct {
	used   bool
	state  fragState
	key    fragKey
	born   int64 // nanoseconds on the Device's clock
	end    int32 // the payload length once the last fragment is in; -1 before
	have   int32 // payload bytes held
	data   []byte
	pieces []fragPiece
}

// fragVerdict says what the caller does with a fragment given to add.
type fragVerdict uint8

const (
	// fragHeld: the fragment is kept; send nothing now.
	fragHeld fragVerdict = iota
	// fragPass: send the fragment with its addresses mapped.
	fragPass
	// fragPassAll: send the fragments held in the returned datagram, then
	// this one, with addresses mapped, then call release.
	fragPassAll
	// fragDrop: the fragment is dropped (counted by add).
	fragDrop
	// fragComplete: the datagram is whole in r.whole.
	fragComplete
)

// events are what Device counts besides the Result of each packet: the
// work of reassembly and every packet dropped, by reason.
type event uint8

const (
	evFragHeld event = iota
	evReassembled
	evRefragmented
	evFragDuplicate
	evFragOverLimit
	// evOfflineReplyFailed is not a drop: it is logged where it happens.
	evOfflineReplyFailed
	// evAnonReplyFailed is an anonymous call refused or redirected by
	// policy whose answer could not be sent (anon.go); logged where it
	// happens.
	evAnonReplyFailed
	evDropSIPFlood
	evDropFragOverlap
	evDropFragTimeout
	evDropFragTooBig
	evDropNoRoom
	// The two below are inbound only (spoofedSource).
	evDropSourceOurs
	evDropSourceForeign
	// Inbound only: a SIP message naming one of our own lines where the
	// peer may only name itself (sipmsg.Impersonation).
	evDropImpersonation

	numEvents
)

var eventNames = [numEvents]string{
	evFragHeld:           "fragment-held",
	evReassembled:        "reassembled",
	evRefragmented:       "refragmented",
	evFragDuplicate:      "fragment-duplicate",
	evFragOverLimit:      "fragment-over-limit",
	evOfflineReplyFailed: "offline-reply-failed",
	evAnonReplyFailed:    "anonymous-reply-failed",
	evDropSIPFlood:       "drop-sip-flood",
	evDropFragOverlap:    "drop-fragment-overlap",
	evDropFragTimeout:    "drop-fragment-timeout",
	evDropFragTooBig:     "drop-fragment-too-big",
	evDropNoRoom:         "drop-no-room",
	evDropSourceOurs:     "drop-source-ours",
	evDropSourceForeign:  "drop-source-foreign",
	evDropImpersonation:  "drop-sip-impersonation",
}

func (e event) String() string { return eventNames[e] }

// reassembler puts the IPv4 fragments of UDP datagrams back together, so
// that the SIP message they carry can be rewritten whole. Not safe for
// concurrent use: each direction of a Device has one, under its mutex.
type reassembler struct {
	dgs [maxDatagrams]datagram
	// held is the bytes stored in every datagram's data.
	held int
	// whole is the last datagram completed by add.
	whole []byte
	// ev counts what happens, in the Device's counters.
	ev *[numEvents]atomic.Uint64
}

// add takes the checked IPv4 fragment pkt (header length ihl, trimmed to
// its total length) of a UDP datagram, arriving at now.
func (r *reassembler) add(pkt []byte, ihl int, now int64) (fragVerdict, *datagram) {
	r.expire(now)
	fo := binary.BigEndian.Uint16(pkt[offFlags:])
	more := fo&flagMF != 0
	start := int32(fo&fragOffsetMask) * 8
	end := start + int32(len(pkt)-ihl)
	key := fragKey{
		src:   [4]byte(pkt[offSrc : offSrc+4]),
		dst:   [4]byte(pkt[offDst : offDst+4]),
		id:    binary.BigEndian.Uint16(pkt[4:]),
		proto: pkt[offProto],
	}
	dg := r.find(key)
	if int(end)+ihl > maxPacket {
		// Reassembled, it would be longer than any IPv4 packet (the "ping
		// of death").
		if dg != nil {
			r.drop(dg, evDropFragTooBig)
		}
		r.count(evDropFragTooBig, 1)
		return fragDrop, nil
	}
	if more && (end == start || (end-start)%8 != 0) {
		// RFC 791: every fragment but the last carries a multiple of 8
		// bytes. Such a fragment cannot be placed; pass it as it was.
		return fragPass, nil
	}
	if dg == nil {
		if dg = r.alloc(key, now); dg == nil {
			r.count(evFragOverLimit, 1)
			return fragPass, nil
		}
	}
	switch dg.state {
	case passing:
		return fragPass, nil
	case dropping:
		r.count(evDropFragOverlap, 1)
		return fragDrop, nil
	}
	if !more {
		if dg.end >= 0 && dg.end != end {
			r.drop(dg, evDropFragOverlap)
			r.count(evDropFragOverlap, 1)
			return fragDrop, nil
		}
		dg.end = end
	}
	for _, p := range dg.pieces {
		if p.start == start && p.end == end {
			// The same fragment again (a duplicated packet): harmless, and
			// the datagram stays whole.
			r.count(evFragDuplicate, 1)
			return fragDrop, nil
		}
		if (start < p.end && p.start < end) || (dg.end >= 0 && p.end > dg.end) {
			r.drop(dg, evDropFragOverlap)
			r.count(evDropFragOverlap, 1)
			return fragDrop, nil
		}
	}
	if dg.end >= 0 && end > dg.end {
		r.drop(dg, evDropFragOverlap)
		r.count(evDropFragOverlap, 1)
		return fragDrop, nil
	}
	if start == 0 {
		p := pkt[ihl:]
		if key.proto != protoUDP || len(p) < udpHeaderLen || !udpSIP(p) {
			dg.state = passing
			return fragPassAll, dg
		}
	}
	if len(dg.pieces) == maxFragsPerDatagram || r.held+len(pkt) > maxHeldBytes {
		// Passed as it was rather than dropped: the receiver can still
		// reassemble it, only its SIP is not rewritten.
		dg.state = passing
		r.count(evFragOverLimit, uint64(len(dg.pieces))+1)
		return fragPassAll, dg
	}
	if dg.pieces == nil {
		dg.pieces = make([]fragPiece, 0, 8)
	}
	dg.pieces = append(dg.pieces, fragPiece{pos: int32(len(dg.data)), n: int32(len(pkt)), start: start, end: end})
	dg.data = append(dg.data, pkt...)
	dg.have += end - start
	r.held += len(pkt)
	r.count(evFragHeld, 1)
	if dg.end < 0 || dg.have != dg.end {
		return fragHeld, nil
	}
	// The pieces do not overlap and all lie inside [0, end), so having end
	// bytes means having all of them.
	r.assemble(dg)
	r.release(dg)
	r.count(evReassembled, 1)
	return fragComplete, nil
}

// assemble builds the whole datagram of dg's pieces in r.whole.
func (r *reassembler) assemble(dg *datagram) {
	var first fragPiece
	for _, p := range dg.pieces {
		if p.start == 0 {
			first = p
		}
	}
	f := dg.data[first.pos : first.pos+first.n]
	ihl := int(f[0]&0x0f) * 4
	total := ihl + int(dg.end)
	if cap(r.whole) < total {
		r.whole = make([]byte, total, max(total, 4096))
	}
	w := r.whole[:total]
	copy(w, f[:ihl])
	for _, p := range dg.pieces {
		b := dg.data[p.pos : p.pos+p.n]
		pihl := int(b[0]&0x0f) * 4
		copy(w[ihl+int(p.start):], b[pihl:])
	}
	binary.BigEndian.PutUint16(w[offTotalLen:], uint16(total))
	binary.BigEndian.PutUint16(w[offFlags:], 0)
	setIPChecksum(w[:ihl])
	r.whole = w
}

func (r *reassembler) find(k fragKey) *datagram {
	for i := range r.dgs {
		if dg := &r.dgs[i]; dg.used && dg.key == k {
			return dg
		}
	}
	return nil
}

// alloc takes a free datagram for k, or returns nil if the source already
// has maxPerSource or every one is in use.
func (r *reassembler) alloc(k fragKey, now int64) *datagram {
	var free *datagram
	n := 0
	for i := range r.dgs {
		dg := &r.dgs[i]
		switch {
		case !dg.used:
			if free == nil {
				free = dg
			}
		case dg.key.src == k.src:
			n++
		}
	}
	if free == nil || n >= maxPerSource {
		return nil
	}
	*free = datagram{used: true, key: k, born: now, end: -1, data: free.data[:0], pieces: free.pieces[:0]}
	return free
}

// expire forgets datagrams older than fragTimeout; fragments still held are
// dropped.
func (r *reassembler) expire(now int64) {
	for i := range r.dgs {
		dg := &r.dgs[i]
		if dg.used && now-dg.born > int64(fragTimeout) {
			if dg.state == collecting {
				r.count(evDropFragTimeout, uint64(len(dg.pieces)))
			}
			r.release(dg)
			dg.used = false
		}
	}
}

// drop discards what dg holds, counted as ev, and drops its later
// fragments until it expires.
func (r *reassembler) drop(dg *datagram, ev event) {
	r.count(ev, uint64(len(dg.pieces)))
	dg.state = dropping
	r.release(dg)
}

// release frees the fragments dg holds. A completed datagram is also
// forgotten; a passing or dropping one stays until it expires so that its
// later fragments are treated alike.
func (r *reassembler) release(dg *datagram) {
	r.held -= len(dg.data)
	if cap(dg.data) > keepDataCap {
		dg.data = nil
	} else {
		dg.data = dg.data[:0]
	}
	dg.pieces = dg.pieces[:0]
	if dg.state == collecting {
		dg.used = false
	}
}

// piece returns the i-th fragment dg holds.
func (dg *datagram) piece(i int) []byte {
	p := dg.pieces[i]
	return dg.data[p.pos : p.pos+p.n]
}

func (r *reassembler) count(e event, n uint64) {
	if n != 0 {
		r.ev[e].Add(n)
	}
}

// splitter cuts a whole IPv4 datagram into fragments of at most mtu bytes
// (RFC 791 §3.2): the first keeps the whole header, the others carry only
// the options marked to be copied; every fragment but the last carries a
// multiple of 8 payload bytes. A fragment is cut the same way into smaller
// ones: their offsets start at its own, and the last keeps its
// more-fragments flag.
type splitter struct {
	pkt         []byte
	ihl         int
	base        uint16   // the fragment offset of pkt, in 8-byte units
	more        bool     // pkt's more-fragments flag
	opts        [40]byte // copied options, padded to 4 bytes
	nopts       int
	first, rest int // payload bytes per fragment
	n           int // fragments
}

func newSplitter(pkt []byte, mtu int) splitter {
	mtu = max(mtu, minMTU)
	s := splitter{pkt: pkt, ihl: int(pkt[0]&0x0f) * 4}
	flags := binary.BigEndian.Uint16(pkt[offFlags:])
	s.base, s.more = flags&fragOffsetMask, flags&flagMF != 0
	for o := pkt[ipHeaderLen:s.ihl]; len(o) > 0; {
		t := o[0]
		if t == 0 { // end of options
			break
		}
		if t == 1 { // no-operation, never copied
			o = o[1:]
			continue
		}
		if len(o) < 2 || int(o[1]) < 2 || int(o[1]) > len(o) {
			break
		}
		l := int(o[1])
		if t&0x80 != 0 {
			s.nopts += copy(s.opts[s.nopts:], o[:l])
		}
		o = o[l:]
	}
	s.nopts = (s.nopts + 3) &^ 3 // the padding is zeros, "end of options"
	s.first = (mtu - s.ihl) &^ 7
	s.rest = (mtu - ipHeaderLen - s.nopts) &^ 7
	payload := len(pkt) - s.ihl
	s.n = 1
	if payload > s.first {
		s.n += (payload - s.first + s.rest - 1) / s.rest
	}
	return s
}

// frag writes fragment k into dst, which must hold at least mtu bytes, and
// returns its length.
func (s *splitter) frag(k int, dst []byte) int {
	start, size := 0, s.first
	if k > 0 {
		start, size = s.first+(k-1)*s.rest, s.rest
	}
	payload := s.pkt[s.ihl:]
	end := min(start+size, len(payload))
	var ihl int
	if k == 0 {
		ihl = copy(dst, s.pkt[:s.ihl])
	} else {
		copy(dst, s.pkt[:ipHeaderLen])
		copy(dst[ipHeaderLen:], s.opts[:s.nopts])
		ihl = ipHeaderLen + s.nopts
		dst[0] = 0x40 | byte(ihl/4)
	}
	n := ihl + copy(dst[ihl:], payload[start:end])
	binary.BigEndian.PutUint16(dst[offTotalLen:], uint16(n))
	flags := s.base + uint16(start/8)
	if k < s.n-1 || s.more {
		flags |= flagMF
	}
	// Don't-fragment is cleared: these are fragments.
	binary.BigEndian.PutUint16(dst[offFlags:], flags)
	setIPChecksum(dst[:ihl])
	return n
}

// setIPChecksum computes the checksum of the IPv4 header h.
func setIPChecksum(h []byte) {
	binary.BigEndian.PutUint16(h[offChecksum:], 0)
	binary.BigEndian.PutUint16(h[offChecksum:], ^fold(sum(h, 0)))
}
