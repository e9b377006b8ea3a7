// Package rtprelay moves a call's media between two UDP sockets: one the
// local phone sends to, one the far side (a SIP provider) sends to. The Pi
// relays trunk calls because neither end can reach the other: the phone
// sits on a private phone port, and the provider sees only the home NAT.
//
// Each side latches: it sends to the address the signalling announced
// (SDP) until the first packet arrives on its socket, and from then on to
// that packet's source only, ignoring packets from anyone else. Latching
// is what makes media work behind a NAT: the source the provider sees is
// the NAT's mapping, whatever the SDP said, and the phone may send from a
// port other than the one it announced.
//
// A Relay is bounded: a Pool hands out at most Max relays, from a fixed
// port range, and a relay ends when its context ends (the call's BYE),
// when no packet crossed it for Idle (a call whose BYE was lost), or at
// Close. Forwarding allocates nothing per packet.
package rtprelay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// MaxPacket bounds a datagram: RTP for voice is a few hundred bytes; a
// larger one is cut, which never happens with the codecs phones use.
const MaxPacket = 2048

// DefaultIdle ends a relay that carried nothing for this long: phones
// send media every 20 ms, so a minute of silence means the call is gone.
const DefaultIdle = 60 * time.Second

// ErrIdle is returned by Run when no packet crossed the relay for Idle.
var ErrIdle = errors.New("rtprelay: no media for the idle time, call presumed over")

// Side names one of the relay's two sockets.
type Side int

const (
	Local  Side = iota // towards the phone on the Pi's phone port
	Remote             // towards the provider
)

func (s Side) String() string {
	if s == Local {
		return "local"
	}
	return "remote"
}

// Stats count one relay's packets; read them with Relay.Stats.
type Stats struct {
	// Forwarded[s] counts packets received on side s and sent out the
	// other side.
	Forwarded [2]uint64
	// Foreign[s] counts packets on side s from a source other than the
	// latched one: dropped.
	Foreign [2]uint64
	// NoDest[s] counts packets received on side s while the other side
	// had no address yet: dropped.
	NoDest [2]uint64
	// Latched[s] is the source side s latched to, if any.
	Latched [2]netip.AddrPort
}

type leg struct {
	conn *net.UDPConn
	// dest is where packets leaving by this leg go: the announced
	// address until latching, then the latched source. Written by this
	// leg's reader (latch) and SetDest, read by the other leg's reader.
	dest    atomic.Pointer[netip.AddrPort]
	latched atomic.Bool

	forwarded, foreign, noDest atomic.Uint64
}

// Relay is one call's relay. Make it with Pool.Open or New, start it with
// Run.
type Relay struct {
	legs [2]leg
	idle time.Duration
	log  *slog.Logger

	lastPacket atomic.Int64 // unix nanoseconds of the last forwarded packet
	closeOnce  sync.Once
	release    func()
}

// New returns a relay over two bound UDP sockets, which it owns and
// closes. idle 0 means DefaultIdle.
func New(local, remote *net.UDPConn, idle time.Duration, log *slog.Logger) *Relay {
	if idle <= 0 {
		idle = DefaultIdle
	}
	r := &Relay{idle: idle, log: log}
	r.legs[Local].conn = local
	r.legs[Remote].conn = remote
	return r
}

// Addr is the address of side s's socket: what goes into the SDP sent to
// that side.
func (r *Relay) Addr(s Side) netip.AddrPort {
	return r.legs[s].conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// SetDest sets where packets for side s go until s latches: the media
// address that side announced in its SDP. A later SDP (re-INVITE) does not
// move a latched side.
func (r *Relay) SetDest(s Side, ap netip.AddrPort) {
	if !ap.IsValid() || r.legs[s].latched.Load() {
		return
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	r.legs[s].dest.Store(&ap)
}

// Stats returns the counters.
func (r *Relay) Stats() Stats {
	var st Stats
	for s := range r.legs {
		l := &r.legs[s]
		st.Forwarded[s] = l.forwarded.Load()
		st.Foreign[s] = l.foreign.Load()
		st.NoDest[s] = l.noDest.Load()
		if l.latched.Load() {
			if d := l.dest.Load(); d != nil {
				st.Latched[s] = *d
			}
		}
	}
	return st
}

// Run forwards until ctx ends (nil), the relay idles (ErrIdle) or a socket
// fails. It closes both sockets before returning.
func (r *Relay) Run(ctx context.Context) error {
	r.lastPacket.Store(time.Now().UnixNano())
	errc := make(chan error, 2)
	for s := range r.legs {
		go func() { errc <- r.runLeg(Side(s)) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	r.Close()
	<-errc
	if err == nil || ctx.Err() != nil && !errors.Is(err, ErrIdle) {
		return nil
	}
	return err
}

// Close stops the relay and frees its sockets (and its pool slot).
// Idempotent.
func (r *Relay) Close() {
	r.closeOnce.Do(func() {
		r.legs[Local].conn.Close()
		r.legs[Remote].conn.Close()
		if r.release != nil {
			r.release()
		}
	})
}

// runLeg reads side s and forwards to the other side.
func (r *Relay) runLeg(s Side) error {
	in, out := &r.legs[s], &r.legs[1-s]
	buf := make([]byte, MaxPacket)
	tick := min(time.Second, r.idle/2)
	in.conn.SetReadDeadline(time.Now().Add(tick))
	for {
		n, src, err := in.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if time.Since(time.Unix(0, r.lastPacket.Load())) >= r.idle {
					return ErrIdle
				}
				in.conn.SetReadDeadline(time.Now().Add(tick))
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("rtprelay: reading %s side: %w", s, err)
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if !in.latched.Load() {
			// The first packet decides; one allocation per call side
			// (a copy, so that src itself stays on the stack).
			latched := src
			in.dest.Store(&latched)
			in.latched.Store(true)
			if r.log != nil {
				r.log.Debug("rtprelay: latched", "side", s.String(), "src", src)
			}
		} else if d := in.dest.Load(); *d != src {
			in.foreign.Add(1)
			continue
		}
		d := out.dest.Load()
		if d == nil {
			in.noDest.Add(1)
			continue
		}
		if _, err := out.conn.WriteToUDPAddrPort(buf[:n], *d); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// ICMP unreachable from a phone that hung up, a full
			// socket buffer: media is loss-tolerant, keep going.
			continue
		}
		in.forwarded.Add(1)
		r.lastPacket.Store(time.Now().UnixNano())
	}
}

// ListenFunc opens a UDP socket; the Pi passes one that opens it in the
// right network namespace (tests pass net.ListenPacket).
type ListenFunc func(network, addr string) (net.PacketConn, error)

// Pool hands out relays with ports from a fixed range, at most Max at a
// time, so a flood of calls cannot exhaust the Pi's ports or memory.
type Pool struct {
	Listen     ListenFunc
	LocalAddr  netip.Addr // the phone-side address to bind (e.g. 10.0.s.2, or 0.0.0.0)
	RemoteAddr netip.Addr // the uplink-side address to bind
	PortLo     int        // first port of the range (even)
	PortHi     int        // last port of the range
	Max        int        // relays at once
	Idle       time.Duration
	Log        *slog.Logger

	mu sync.Mutex
	// mu guards the following fields.
	inUse       int
	nextPortOff int
}

// ErrFull is returned by Open when Max relays are running.
var ErrFull = errors.New("rtprelay: every relay slot is in use; the call is refused until one ends")

// Open binds two sockets from the range and returns their relay; Close
// (or the end of Run) gives the slot back.
func (p *Pool) Open() (*Relay, error) {
	p.mu.Lock()
	if p.inUse >= p.Max {
		p.mu.Unlock()
		return nil, ErrFull
	}
	p.inUse++
	p.mu.Unlock()
	release := func() {
		p.mu.Lock()
		p.inUse--
		p.mu.Unlock()
	}
	local, err := p.bind(p.LocalAddr)
	if err != nil {
		release()
		return nil, err
	}
	remote, err := p.bind(p.RemoteAddr)
	if err != nil {
		local.Close()
		release()
		return nil, err
	}
	r := New(local, remote, p.Idle, p.Log)
	r.release = release
	return r, nil
}

// bind takes the next free even port of the range (RTP uses even ports;
// RFC 3550 §11 leaves the odd one for RTCP).
func (p *Pool) bind(addr netip.Addr) (*net.UDPConn, error) {
	span := (p.PortHi - p.PortLo + 1) / 2
	if span <= 0 {
		return nil, fmt.Errorf("rtprelay: empty port range %d-%d", p.PortLo, p.PortHi)
	}
	var lastErr error
	for range span {
		p.mu.Lock()
		port := p.PortLo + 2*(p.nextPortOff%span)
		p.nextPortOff++
		p.mu.Unlock()
		c, err := p.Listen("udp", netip.AddrPortFrom(addr, uint16(port)).String())
		if err != nil {
			lastErr = err
			continue
		}
		uc, ok := c.(*net.UDPConn)
		if !ok {
			c.Close()
			return nil, fmt.Errorf("rtprelay: listen returned %T, want *net.UDPConn", c)
		}
		return uc, nil
	}
	return nil, fmt.Errorf("rtprelay: no free port in %d-%d on %s (last error: %w)", p.PortLo, p.PortHi, addr, lastErr)
}

// InUse says how many relays are open.
func (p *Pool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}
