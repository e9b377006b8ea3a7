package lab

import (
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Impairment is what the lab Internet does to every IP packet crossing it:
// a one-way delay and random loss, like `tc netem delay D loss L` on the
// path. The zero value is a perfect wire.
//
// This machine's kernel has neither sch_netem nor nft's queue expression,
// so the Internet is a switch written in Go (see Internet) and the
// impairment is applied there.
type Impairment struct {
	// Delay is added to every IPv4/IPv6 frame, once per crossing: a ping
	// between two hosts on the Internet sees a round trip of 2×Delay.
	Delay time.Duration
	// Loss is the probability, in [0, 1], that an IP frame is dropped.
	Loss float64
	// Limit bounds the frames waiting in the delay line; more are dropped
	// and counted as Overflow. 0 means DefaultImpairLimit.
	Limit int
}

// DefaultImpairLimit is netem's default queue limit, in frames.
const DefaultImpairLimit = 1000

func (im Impairment) validate() error {
	switch {
	case im.Delay < 0 || im.Delay > time.Minute:
		return fmt.Errorf("impairment delay %v: want between 0 and 1m", im.Delay)
	case math.IsNaN(im.Loss) || im.Loss < 0 || im.Loss > 1:
		return fmt.Errorf("impairment loss %v: want a probability between 0 and 1 (0.01 is 1%%)", im.Loss)
	case im.Limit < 0:
		return fmt.Errorf("impairment limit %d: want 0 (default %d) or more", im.Limit, DefaultImpairLimit)
	}
	return nil
}

func (im Impairment) limit() int {
	if im.Limit == 0 {
		return DefaultImpairLimit
	}
	return im.Limit
}

func (im Impairment) String() string {
	return fmt.Sprintf("delay %v loss %.4g%% limit %d", im.Delay, im.Loss*100, im.limit())
}

// ImpairStats counts what the Internet switch did since it started.
type ImpairStats struct {
	Frames    uint64 // frames read from all ports
	Forwarded uint64 // frame copies written to ports (a flooded frame counts once per port)
	Lost      uint64 // IP frames dropped by Impairment.Loss
	Overflow  uint64 // IP frames dropped because the delay line was full
	Errors    uint64 // frames that were malformed or could not be written
}

type impairCounters struct {
	frames, forwarded, lost, overflow, errors atomic.Uint64
}

func (c *impairCounters) snapshot() ImpairStats {
	return ImpairStats{
		Frames:    c.frames.Load(),
		Forwarded: c.forwarded.Load(),
		Lost:      c.lost.Load(),
		Overflow:  c.overflow.Load(),
		Errors:    c.errors.Load(),
	}
}

// vnetHdrLen is the size of the virtio_net_hdr that Linux puts in front of
// every frame on a PACKET_VNET_HDR socket. The switch carries it from the
// input port to the output ports unchanged, so checksum offload and GSO
// survive the trip (see impair_linux.go).
const vnetHdrLen = 10

// frameInfo is what the switch needs from a frame: addresses and whether it
// is IP (impaired) or not (ARP and the like, forwarded at once).
type frameInfo struct {
	dst, src [6]byte
	ip       bool
}

// parseFrame reads the Ethernet header behind the vnet header. It reports
// false for frames too short to carry one.
func parseFrame(b []byte) (frameInfo, bool) {
	if len(b) < vnetHdrLen+14 {
		return frameInfo{}, false
	}
	eth := b[vnetHdrLen:]
	var fi frameInfo
	copy(fi.dst[:], eth[0:6])
	copy(fi.src[:], eth[6:12])
	etype := binary.BigEndian.Uint16(eth[12:14])
	if etype == 0x8100 && len(eth) >= 18 { // one VLAN tag
		etype = binary.BigEndian.Uint16(eth[16:18])
	}
	fi.ip = etype == 0x0800 || etype == 0x86dd
	return fi, true
}

// ipPayload is the IP packet in a frame parseFrame took for IP.
func ipPayload(b []byte) []byte {
	eth := b[vnetHdrLen:]
	if binary.BigEndian.Uint16(eth[12:14]) == 0x8100 {
		return eth[18:]
	}
	return eth[14:]
}

func (fi frameInfo) flood() bool { return fi.dst[0]&1 != 0 } // broadcast or multicast

// switchPort is one port of the Internet switch. Read blocks until a frame
// (vnet header + Ethernet) arrives and fails once the port is closed.
// WriteFrame must not block: a frame that cannot be written at once is
// dropped by the caller and counted.
type switchPort interface {
	io.ReadCloser
	WriteFrame(b []byte) error
}

// queued is a frame in the delay line.
type queued struct {
	due  time.Time
	seq  uint64
	in   int
	out  int // port index, or -1 to flood
	data []byte
}

// delayLine holds frames until they are due, in due order (FIFO among
// equal times). It is owned by the switch goroutine.
type delayLine struct {
	h   queuedHeap
	seq uint64
}

// push adds f unless limit frames are waiting already.
func (d *delayLine) push(f queued, limit int) bool {
	if len(d.h) >= limit {
		return false
	}
	d.seq++
	f.seq = d.seq
	heap.Push(&d.h, f)
	return true
}

// next returns when the earliest frame is due.
func (d *delayLine) next() (time.Time, bool) {
	if len(d.h) == 0 {
		return time.Time{}, false
	}
	return d.h[0].due, true
}

// popDue removes and returns the earliest frame if it is due at now.
func (d *delayLine) popDue(now time.Time) (queued, bool) {
	if len(d.h) == 0 || d.h[0].due.After(now) {
		return queued{}, false
	}
	return heap.Pop(&d.h).(queued), true
}

func (d *delayLine) len() int { return len(d.h) }

type queuedHeap []queued

func (h queuedHeap) Len() int { return len(h) }
func (h queuedHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h queuedHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *queuedHeap) Push(x any)   { *h = append(*h, x.(queued)) }
func (h *queuedHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	old[len(old)-1] = queued{}
	*h = old[:len(old)-1]
	return f
}

// inFrame is a frame a port reader hands to the switch goroutine.
type inFrame struct {
	port int
	data []byte
}

// impairSwitch is a learning Ethernet switch with a delay line. One
// goroutine (run) owns the port list, the MAC table and the delay line;
// one reader goroutine per port feeds it. The impairment and the counters
// are atomics so that tests and programs can read and change them at any
// time.
type impairSwitch struct {
	log   *slog.Logger
	imp   atomic.Pointer[Impairment]
	drop  atomic.Pointer[func(ip []byte) bool]
	stats impairCounters
	rand  func() float64 // [0,1); replaced by tests

	in   chan inFrame
	add  chan addPortReq
	done chan struct{} // closed when run and all readers have returned

	readers sync.WaitGroup
}

type addPortReq struct {
	p     switchPort
	reply chan error
}

func newImpairSwitch(log *slog.Logger, imp Impairment) *impairSwitch {
	s := &impairSwitch{
		log:  log,
		rand: rand.Float64,
		in:   make(chan inFrame, 256),
		add:  make(chan addPortReq),
		done: make(chan struct{}),
	}
	s.imp.Store(&imp)
	return s
}

// addPort hands p to the running switch, which then owns it (and closes it
// when it stops). If the switch has stopped, p is closed and ErrClosed
// returned.
func (s *impairSwitch) addPort(p switchPort) error {
	req := addPortReq{p: p, reply: make(chan error, 1)}
	select {
	case s.add <- req:
		return <-req.reply
	case <-s.done:
		p.Close()
		return ErrClosed
	}
}

// run switches frames until ctx is cancelled, then closes every port,
// waits for the readers and closes s.done.
func (s *impairSwitch) run(ctx context.Context) {
	s.log.Debug("internet switch started")
	var ports []switchPort
	macs := map[[6]byte]int{}
	var line delayLine
	timer := time.NewTimer(time.Hour)
	defer func() {
		timer.Stop()
		for _, p := range ports {
			p.Close()
		}
		// Readers blocked in send see ctx done; readers blocked in Read
		// see their port closed.
		s.readers.Wait()
		st := s.stats.snapshot()
		s.log.Debug("internet switch stopped", "frames", st.Frames, "forwarded", st.Forwarded,
			"lost", st.Lost, "overflow", st.Overflow, "errors", st.Errors, "queued", line.len())
		close(s.done)
	}()

	write := func(f queued) {
		for i, p := range ports {
			if i == f.in || (f.out >= 0 && i != f.out) {
				continue
			}
			if err := p.WriteFrame(f.data); err != nil {
				s.stats.errors.Add(1)
				continue
			}
			s.stats.forwarded.Add(1)
		}
	}
	for {
		if due, ok := line.next(); ok {
			timer.Reset(time.Until(due))
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case req := <-s.add:
			ports = append(ports, req.p)
			idx := len(ports) - 1
			s.readers.Add(1)
			go s.runPortReader(ctx, idx, req.p)
			req.reply <- nil
		case f := <-s.in:
			s.stats.frames.Add(1)
			fi, ok := parseFrame(f.data)
			if !ok {
				s.stats.errors.Add(1)
				continue
			}
			macs[fi.src] = f.port
			out := -1
			if !fi.flood() {
				if p, known := macs[fi.dst]; known {
					if p == f.port {
						continue // for a host on the same port: not ours to deliver
					}
					out = p
				}
			}
			q := queued{in: f.port, out: out, data: f.data}
			imp := s.imp.Load()
			// Only IP is impaired: ARP stands for link-layer resolution
			// that a real Internet path does not have, and delaying or
			// losing it would add a round trip to every first packet.
			if !fi.ip {
				write(q)
				continue
			}
			if imp.Loss > 0 && s.rand() < imp.Loss {
				s.stats.lost.Add(1)
				continue
			}
			if d := s.drop.Load(); d != nil && (*d)(ipPayload(f.data)) {
				s.stats.lost.Add(1)
				continue
			}
			if imp.Delay == 0 && line.len() == 0 {
				write(q)
				continue
			}
			q.due = time.Now().Add(imp.Delay)
			if !line.push(q, imp.limit()) {
				s.stats.overflow.Add(1)
			}
		case <-timer.C:
		}
		now := time.Now()
		for {
			f, ok := line.popDue(now)
			if !ok {
				break
			}
			write(f)
		}
	}
}

// runPortReader reads frames from port idx and hands them to run until the
// port is closed or ctx is cancelled.
func (s *impairSwitch) runPortReader(ctx context.Context, idx int, p switchPort) {
	defer s.readers.Done()
	buf := make([]byte, vnetHdrLen+65536)
	for {
		n, err := p.Read(buf)
		if errors.Is(err, syscall.ENETDOWN) && ctx.Err() == nil {
			// Reported once when the interface goes down or away; the
			// socket keeps working if it comes back.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) {
				s.log.Debug("internet switch port stopped", "port", idx, "err", err)
			}
			return
		}
		data := make([]byte, n)
		copy(data, buf[:n])
		select {
		case s.in <- inFrame{port: idx, data: data}:
		case <-ctx.Done():
			return
		}
	}
}

// Internet is a namespace standing for the Internet between NATs, VPS and
// public hosts, with an adjustable Impairment. Hosts plug in with Attach,
// like into a Bridge; NAT takes either as its uplink (see Segment).
//
// It is a learning Ethernet switch in Go rather than a Linux bridge: each
// port is a veth whose end inside the Internet namespace is read and
// written through an AF_PACKET socket. That needs nothing from the kernel
// beyond veth and packet sockets (no netem, no nfqueue), keeps hosts' view
// of the network unchanged (one Ethernet segment, ARP, any protocol), and
// puts each crossing through a single delay line in one goroutine, which
// is easy to bound, count and stop. The alternative, TUN devices with
// routes, would make the Internet a router (TTL, ICMP, per-subnet routes)
// and needs one TUN per attached network.
type Internet struct {
	*Host
	sw     *impairSwitch
	cancel context.CancelFunc

	mu    sync.Mutex
	ports int
}

// Segment is a shared Ethernet segment that hosts plug into: a *Bridge or
// an *Internet. Attach puts interface ifname inside h with address cidr
// (empty for none) and returns the name of the port on the segment side.
type Segment interface {
	Attach(h *Host, ifname, cidr string) (port string, err error)
}

var (
	_ Segment = (*Bridge)(nil)
	_ Segment = (*Internet)(nil)
)

// Internet creates an Internet namespace called name whose switch applies
// imp. The switch runs until ctx is cancelled, Internet.Close or Lab.Close.
func (l *Lab) Internet(ctx context.Context, name string, imp Impairment) (*Internet, error) {
	if err := imp.validate(); err != nil {
		return nil, err
	}
	h, err := l.Host(name)
	if err != nil {
		return nil, err
	}
	// The ports carry no addresses; without IPv6 they also stay silent
	// (no router solicitations or MLD from the switch's own side).
	for _, key := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
		if err := h.Sysctl(key, "1"); err != nil {
			l.log.Debug("internet: IPv6 stays on", "err", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	in := &Internet{Host: h, sw: newImpairSwitch(l.log.With("internet", name), imp), cancel: cancel}
	if err := l.OnClose(in.Close); err != nil {
		cancel()
		return nil, err
	}
	go in.sw.run(ctx)
	l.log.Info("internet created", "host", name, "ns", h.ns, "impairment", imp.String())
	return in, nil
}

// SetDrop makes the Internet drop every IP packet (from its IP header on)
// for which drop returns true, counted as lost; nil drops none. drop runs
// on the switch's goroutine, once per packet: it must be quick, and must
// not keep the packet. Tests use it to lose one chosen message.
func (in *Internet) SetDrop(drop func(ip []byte) bool) {
	if drop == nil {
		in.sw.drop.Store(nil)
		return
	}
	in.sw.drop.Store(&drop)
}

// Attach plugs h into the Internet with a veth pair: interface ifname
// inside h with address cidr (empty for none), and port i<k> inside the
// Internet namespace, handed to the switch. It returns the port name.
func (in *Internet) Attach(h *Host, ifname, cidr string) (port string, err error) {
	in.mu.Lock()
	port = fmt.Sprintf("i%d", in.ports)
	in.ports++
	in.mu.Unlock()
	l := in.lab
	if err := l.Veth(in.Host, port, h, ifname); err != nil {
		return "", err
	}
	p, err := openSwitchPort(in.Host, port)
	if err != nil {
		return "", fmt.Errorf("internet %s: port %s: %w", in.name, port, err)
	}
	if err := in.sw.addPort(p); err != nil {
		return "", fmt.Errorf("internet %s: port %s: %w", in.name, port, err)
	}
	if cidr != "" {
		if err := h.Addr(ifname, cidr); err != nil {
			return "", err
		}
	}
	return port, nil
}

// SetImpairment changes the delay and loss from now on. Frames already in
// the delay line keep their due time.
func (in *Internet) SetImpairment(imp Impairment) error {
	if err := imp.validate(); err != nil {
		return err
	}
	in.sw.imp.Store(&imp)
	in.lab.log.Info("internet impairment changed", "host", in.name, "impairment", imp.String())
	return nil
}

// Impairment returns the impairment in force.
func (in *Internet) Impairment() Impairment { return *in.sw.imp.Load() }

// Stats returns the switch's counters.
func (in *Internet) Stats() ImpairStats { return in.sw.stats.snapshot() }

// Done is closed once the switch has stopped.
func (in *Internet) Done() <-chan struct{} { return in.sw.done }

// Close stops the switch and waits for it. The namespace itself goes with
// Lab.Close. Close is idempotent.
func (in *Internet) Close() error {
	in.cancel()
	select {
	case <-in.sw.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("internet %s: switch did not stop within 10 s", in.name)
	}
}
