package rewrite

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/peerline/peerline/pkg/numplan"
)

// Device is the TUN of one tunnel's wireguard-go device, seen through the
// address map: packets read from the TUN (from local phones, about to be
// encrypted for the peer) are mapped with numplan.Outbound, packets written to
// it (decrypted from the peer) with numplan.Inbound.
//
// A SIP message can grow when its addresses are mapped. On Read the packet
// may use all of len(bufs[i]) past the offset; on Write, all of cap(bufs[i]).
// wireguard-go's buffers hold 64 KiB, so only a message that no longer fits
// in an IPv4 packet is passed with its addresses mapped but its SIP unchanged
// (counted as SIPTooBig).
type Device struct {
	inner tun.Device
	peer  uint8
	log   *slog.Logger

	// The scratch buffers in which SIP packets are rebuilt, one per
	// direction. wireguard-go calls Read from one goroutine but Write from
	// one goroutine per peer, so each is guarded by its own mutex; the RTP
	// path takes neither.
	outMu  sync.Mutex
	outBuf []byte
	inMu   sync.Mutex
	inBuf  []byte

	counts [2]counters
	// media counts UDP packets to and from each local line's phone
	// (10.0.s.1), indexed by s: a changing count means the phone is in a
	// call with this peer. One atomic add per packet; no clock read.
	media [256]atomic.Uint64
	// logged records which unusual results have been logged once; after
	// that they are only counted.
	logged [2][numResults]atomic.Bool

	closeOnce sync.Once
	closeErr  error
}

// counters are the per-result packet counts of one direction, padded so that
// the reading and the writing goroutine do not share a cache line.
type counters struct {
	n [numResults]atomic.Uint64
	_ [64]byte
}

var _ tun.Device = (*Device)(nil)

// Wrap returns inner with the address map of tunnel peer applied to every
// packet. log may be nil.
func Wrap(inner tun.Device, peer uint8, log *slog.Logger) *Device {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Device{inner: inner, peer: peer, log: log.With("peer", peer)}
}

// Read reads packets from the TUN and maps them for the wire.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.inner.Read(bufs, sizes, offset)
	for i := range n {
		if offset < 0 || offset > len(bufs[i]) || sizes[i] < 0 || sizes[i] > len(bufs[i])-offset {
			continue
		}
		sizes[i] = d.rewrite(bufs[i][offset:], sizes[i], numplan.Outbound)
	}
	return n, err
}

// Write maps packets from the wire for the TUN and writes them to it.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if offset < 0 || offset > len(b) {
			continue
		}
		n := d.rewrite(b[offset:cap(b)], len(b)-offset, numplan.Inbound)
		bufs[i] = b[:offset+n]
	}
	return d.inner.Write(bufs, offset)
}

// rewrite maps the packet room[:size] in place and returns its new size.
func (d *Device) rewrite(room []byte, size int, dir numplan.Direction) int {
	pkt := room[:size]
	var (
		out   []byte
		res   Result
		local [4]byte
	)
	// Packets are mapped in place: keep the local source before it goes.
	if dir == numplan.Outbound && len(pkt) >= ipHeaderLen {
		local = [4]byte(pkt[offSrc : offSrc+4])
	}
	if mayRewriteSIP(pkt) {
		out, res = d.rewriteSIP(room, pkt, dir)
	} else {
		out, res = Packet(nil, pkt, d.peer, dir)
	}
	d.counts[dir].n[res].Add(1)
	if res == Plain {
		if dir == numplan.Inbound && len(out) >= ipHeaderLen {
			local = [4]byte(out[offDst : offDst+4])
		}
		d.countMedia(out, local)
	}
	switch res {
	case Plain, SIPRewritten, SIPUnchanged:
	default:
		if !d.logged[dir][res].Load() && !d.logged[dir][res].Swap(true) {
			d.log.LogAttrs(context.Background(), slog.LevelInfo,
				"rewrite: first packet of this kind, later ones are only counted",
				slog.String("dir", dir.String()), slog.String("kind", res.String()))
		}
	}
	return len(out)
}

// countMedia notes a UDP packet of a local phone, whose address is local:
// the source of an outbound packet before it was mapped, the destination of
// an inbound one after.
func (d *Device) countMedia(pkt []byte, local [4]byte) {
	if len(pkt) < ipHeaderLen || pkt[offProto] != protoUDP {
		return
	}
	if local[0] == 10 && local[1] == 0 && local[3] == numplan.HostPhone && numplan.ValidLine(int(local[2])) {
		d.media[local[2]].Add(1)
	}
}

// MediaPackets returns how many UDP packets of line s's phone crossed this
// tunnel so far; the daemon compares two readings to tell whether the phone
// is in a call.
func (d *Device) MediaPackets(s int) uint64 {
	if s < 0 || s >= len(d.media) {
		return 0
	}
	return d.media[s].Load()
}

// rewriteSIP runs Packet with the direction's scratch buffer and copies a
// rewritten packet back into room.
func (d *Device) rewriteSIP(room, pkt []byte, dir numplan.Direction) ([]byte, Result) {
	mu, buf := &d.outMu, &d.outBuf
	if dir == numplan.Inbound {
		mu, buf = &d.inMu, &d.inBuf
	}
	mu.Lock()
	defer mu.Unlock()
	out, res := Packet(*buf, pkt, d.peer, dir)
	if res != SIPRewritten {
		return out, res
	}
	// Keep the buffer Packet grew, so that the next message of this size
	// does not allocate.
	*buf = out[:0]
	if len(out) > len(room) {
		out, _ = mapHeaders(pkt, d.peer, dir)
		return out, SIPTooBig
	}
	return room[:copy(room, out)], SIPRewritten
}

// Counts are the packets of one direction by what was done with them (see
// Result).
type Counts struct {
	Packets       uint64 // all of the below
	Plain         uint64
	SIPRewritten  uint64
	SIPUnchanged  uint64
	SIPUnparsable uint64
	SIPTooBig     uint64
	SIPOverTCP    uint64
	Fragments     uint64
	BadTransport  uint64
	NonIPv4       uint64
	Malformed     uint64
}

// LogValue logs the non-zero counts.
func (c Counts) LogValue() slog.Value {
	var attrs []slog.Attr
	for r := range numResults {
		if n := c.get(r); n != 0 {
			attrs = append(attrs, slog.Uint64(r.String(), n))
		}
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
	}
	panic("rewrite: unknown Result " + r.String())
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
			n := d.counts[dir].n[r].Load()
			*c.field(r) = n
			c.Packets += n
		}
	}
	return s
}

// File returns the inner device's file.
func (d *Device) File() *os.File { return d.inner.File() }

// MTU returns the inner device's MTU. A rewritten SIP message can be a few
// bytes larger than what the phone sent; see the package doc on fragments.
func (d *Device) MTU() (int, error) { return d.inner.MTU() }

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
