// Package dhcpd is the DHCP server on the Pi's phone port. Each phone (each
// MAC) gets a line s and the /30 of the numbering plan: the phone is
// 10.0.s.1, the Pi's side 10.0.s.2 is its router, DNS and NTP server, and
// option 66 carries the provisioning URL, so a factory-reset phone finds its
// configuration without anything typed on it.
//
// Why it looks the way it does:
//   - Lines are stable. A MAC keeps its line across reboots (leases.json,
//     written atomically) and across RELEASE; a line goes to another MAC
//     only when every line is bound and the binding has been silent for
//     ReclaimAfter, or when a person runs `peerline phones forget`.
//   - Protocol encoding is github.com/insomniacslk/dhcp's dhcpv4. Its
//     server4.Server is not used: it starts a goroutine and allocates a
//     buffer per packet, which a flood turns into unbounded work. Here one
//     reader goroutine fills a fixed pool of buffers, and packets beyond it
//     are dropped and counted. The socket is server4.NewIPv4UDPConn: UDP
//     port 67 bound to the phone port with SO_BINDTODEVICE, so nothing is
//     ever served on the uplink.
//   - One goroutine (Run) owns the table; the other methods send it
//     closures through a channel. The decisions themselves (table.handle)
//     are a pure function of packet, clock and table, driven directly by
//     the unit tests and FuzzHandle.
//   - New MACs are rate limited (token bucket, 5/s, burst 10); known MACs
//     are always served. A line is reserved for a DISCOVERing MAC for a
//     minute and bound only on REQUEST, so a flood of DISCOVERs alone
//     leaves no bindings behind. Malformed packets are counted by reason
//     and logged at most once a minute per reason; they never touch a
//     binding.
//   - Before a line is offered the Pi's side must exist: LineSetter.EnsureLine
//     is called (bounded by a timeout) and nothing is answered if it fails.
//   - Replies go to 255.255.255.255 on the phone port unless the client
//     already has its address (RENEWING, INFORM): a client without an
//     address cannot receive unicast, and a UDP socket cannot prime the ARP
//     cache. The source address is set to the line's 10.0.s.2 (IP_PKTINFO)
//     so that every reply comes from the server identifier it names.
//   - Option 43 and 150 are not sent: Yealink takes the provisioning server
//     from option 66 before option 43 (admin guides: "custom option > option
//     66 > option 43"), and Grandstream GXP16xx reads option 66 as the config
//     server path; option 150 is Cisco's.
//   - Option 26 (interface MTU) is not sent: the phone port, the links to
//     the tunnels and their TUNs are all 1500 bytes, so a phone's full-size
//     datagram, Don't Fragment and all, reaches the rewriter, which cuts
//     what exceeds the tunnel MTU itself (pkg/rewrite, docs/mtu.md). Giving
//     phones the tunnel MTU instead would help only phones that honour the
//     option, would shrink everything else they send (provisioning, the
//     phone's own web pages), and would tie every phone to the smallest
//     tunnel of the node.
package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/peerline/peerline/pkg/numplan"
)

// LineSetter configures the Pi's side of phone lines on the phone port.
type LineSetter interface {
	EnsureLine(ctx context.Context, line int) error // puts 10.0.s.2/30 on the phone port
	RemoveLine(ctx context.Context, line int) error
}

// Options configure a Server.
type Options struct {
	Port         string // phone port interface name
	StateDir     string // holds leases.json
	Static       []int  // hand-configured lines: never handed out
	Lines        LineSetter
	ProvisionURL func(line int) string // option 66; nil or "" for none
	Log          *slog.Logger
	Now          func() time.Time                            // nil = time.Now
	Listen       func(ifname string) (net.PacketConn, error) // nil = ListenUDP: UDP :67 bound to ifname in the current netns
}

// Phone is one bound phone, as `peerline phones` shows it.
type Phone struct {
	Line      int        `json:"line"`
	MAC       string     `json:"mac"`
	Vendor    string     `json:"vendor,omitempty"`
	Model     string     `json:"model,omitempty"`
	Hostname  string     `json:"hostname,omitempty"`
	Addr      netip.Addr `json:"addr"`
	Bound     time.Time  `json:"bound"`
	LastSeen  time.Time  `json:"last_seen"`
	UserAgent string     `json:"user_agent,omitempty"`
}

var (
	// ErrClosed is returned by calls made after Run has returned.
	ErrClosed = errors.New("dhcpd: server stopped")
	// ErrNoPhone is returned by Forget for a line no phone is bound to.
	ErrNoPhone = errors.New("no phone on this line")
)

const (
	// lineTimeout bounds each EnsureLine and RemoveLine call. Generous: on
	// a Pi busy booting, the supervisor's loop may be setting up tunnels
	// (the qemu boot test saw 5 s run out); the phone retries anyway.
	lineTimeout = 15 * time.Second
	// reensureEvery: a line whose Pi side was ensured less than this ago
	// is not ensured again, so a phone retrying DISCOVER costs no netlink
	// work, while an address removed by hand comes back within a minute.
	reensureEvery = time.Minute
	// queueLen packets wait for the run goroutine at most; more are
	// dropped. With maxPacket this bounds the memory a flood can take.
	queueLen  = 64
	maxPacket = 1500
	tickEvery = 15 * time.Second
)

// Server is the DHCP server. Create it with New, start it with Run.
type Server struct {
	opts       Options
	log        *slog.Logger
	now        func() time.Time
	listen     func(string) (net.PacketConn, error)
	leasesPath string
	lines      []int // bound when New loaded the file

	reqs      chan func()
	uas       chan uaNote
	done      chan struct{}
	started   atomic.Bool
	queueFull atomic.Uint64

	// Owned by the Run goroutine (by New before Run starts).
	t         *table
	ensuredAt [numplan.MaxLine + 1]time.Time
	lastSave  time.Time
}

type uaNote struct {
	line int
	ua   string
}

// New loads the bindings from opts.StateDir/leases.json. A corrupt file is
// moved aside (see the log) and the server starts empty.
func New(opts Options) (*Server, error) {
	if opts.Port == "" {
		return nil, errors.New("dhcpd: no phone port interface given; set it in the config")
	}
	if opts.StateDir == "" {
		return nil, errors.New("dhcpd: no state directory given")
	}
	if opts.Lines == nil {
		return nil, errors.New("dhcpd: no LineSetter given")
	}
	for _, s := range opts.Static {
		if !numplan.ValidLine(s) {
			return nil, fmt.Errorf("dhcpd: static line %d is outside %d..%d; fix the config", s, numplan.MinLine, numplan.MaxLine)
		}
	}
	s := &Server{
		opts:       opts,
		log:        opts.Log,
		now:        opts.Now,
		listen:     opts.Listen,
		leasesPath: filepath.Join(opts.StateDir, LeasesFile),
		reqs:       make(chan func()),
		uas:        make(chan uaNote, 64),
		done:       make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("port", opts.Port)
	if s.now == nil {
		s.now = time.Now
	}
	if s.listen == nil {
		s.listen = ListenUDP
	}
	now := s.now()
	s.t = newTable(s.log, opts.Static, opts.ProvisionURL, now)
	if err := s.t.load(s.leasesPath, now); err != nil {
		return nil, err
	}
	if s.t.dirty {
		if err := s.save(now); err != nil {
			return nil, err
		}
	}
	for _, b := range s.t.bindings() {
		s.lines = append(s.lines, b.Line)
	}
	s.lastSave = now
	return s, nil
}

// Lines returns the lines bound when New loaded leases.json, in order, so
// the supervisor can put their 10.0.s.2/30 on the port before Run.
func (s *Server) Lines() []int { return slices.Clone(s.lines) }

// ListenUDP opens UDP port 67 bound to interface ifname (SO_BINDTODEVICE)
// in the calling thread's network namespace.
func ListenUDP(ifname string) (net.PacketConn, error) { return listenUDP(ifname) }

// Run serves DHCP on the phone port until ctx ends; it returns nil then.
// It returns an error if the socket cannot be opened or fails. Run may be
// called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("dhcpd: Run called twice")
	}
	defer close(s.done)
	conn, err := s.listen(s.opts.Port)
	if err != nil {
		return fmt.Errorf("opening the DHCP socket on phone port %s (is the interface name in the config right, and are we root?): %w", s.opts.Port, err)
	}
	defer conn.Close()
	s.log.Info("DHCP server started", "bound", len(s.t.byMAC), "static", s.opts.Static, "path", s.leasesPath)

	// free holds the buffers the reader may fill; the run loop gives each
	// back after handling it.
	free := make(chan []byte, queueLen)
	for range queueLen {
		free <- make([]byte, maxPacket)
	}
	pkts := make(chan []byte, queueLen)
	readErr := make(chan error, 1)
	go s.runReader(conn, free, pkts, readErr)

	var pc *ipv4.PacketConn
	if _, ok := conn.(*net.UDPConn); ok {
		pc = ipv4.NewPacketConn(conn)
	}
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			conn.Close()
			<-readErr
			s.stop()
			return nil
		case err := <-readErr:
			s.stop()
			return fmt.Errorf("reading DHCP packets on phone port %s: %w", s.opts.Port, err)
		case p := <-pkts:
			s.serve(ctx, conn, pc, p)
			free <- p[:cap(p)]
		case f := <-s.reqs:
			f()
		case n := <-s.uas:
			s.noteUserAgent(n)
		case <-tick.C:
			now := s.now()
			s.expire(ctx, now)
			s.persist(now)
		}
	}
}

func (s *Server) stop() {
	if s.t.dirty || s.t.seenDirty {
		if err := s.save(s.now()); err != nil {
			s.log.Error("DHCP: saving phone bindings at stop failed", "err", err)
		}
	}
	s.log.Info("DHCP server stopped")
}

// runReader reads packets into buffers from free and queues them. When no
// buffer is free the run loop is behind: the packet is read into scratch
// and dropped, so a flood costs a read and a counter, nothing more.
func (s *Server) runReader(conn net.PacketConn, free chan []byte, pkts chan<- []byte, errc chan<- error) {
	s.log.Debug("DHCP reader started")
	scratch := make([]byte, maxPacket)
	for {
		var buf []byte
		select {
		case buf = <-free:
		default:
			buf = scratch
		}
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			s.log.Debug("DHCP reader stopped", "err", err)
			errc <- err
			return
		}
		if &buf[0] == &scratch[0] {
			s.queueFull.Add(1)
			continue
		}
		pkts <- buf[:n]
	}
}

func (s *Server) serve(ctx context.Context, conn net.PacketConn, pc *ipv4.PacketConn, p []byte) {
	now := s.now()
	s.expire(ctx, now)
	r, ok := s.t.handle(p, now, func(line int) error { return s.ensureLine(ctx, line, now) })
	s.persist(now)
	if !ok {
		return
	}
	b := r.msg.ToBytes()
	dst := &net.UDPAddr{IP: r.dst.AsSlice(), Port: 68}
	var err error
	if pc != nil {
		// IP_PKTINFO source: the reply comes from the 10.0.s.2 named in
		// its server identifier, not the port's first address.
		_, err = pc.WriteTo(b, &ipv4.ControlMessage{Src: r.src.AsSlice()}, dst)
	}
	if pc == nil || err != nil {
		_, err = conn.WriteTo(b, dst)
	}
	if err != nil {
		s.t.logLimited("send", now, slog.LevelError, "DHCP: sending a reply on the phone port failed", "dst", dst.String(), "err", err)
	}
}

// ensureLine makes sure the Pi's side of line exists before it is handed
// out.
func (s *Server) ensureLine(ctx context.Context, line int, now time.Time) error {
	if at := s.ensuredAt[line]; !at.IsZero() && now.Sub(at) < reensureEvery && !now.Before(at) {
		return nil
	}
	c, cancel := context.WithTimeout(ctx, lineTimeout)
	defer cancel()
	if err := s.opts.Lines.EnsureLine(c, line); err != nil {
		s.t.logLimited(fmt.Sprint("ensure:", line), now, slog.LevelError,
			"DHCP: cannot put the Pi's address of a phone line on the phone port; the phone is not answered and will retry",
			"line", line, "addr", numplan.LinePrefix(uint8(line)).String(), "err", err)
		return err
	}
	s.ensuredAt[line] = now
	return nil
}

// expire drops offers nobody requested and takes their lines off the port.
func (s *Server) expire(ctx context.Context, now time.Time) {
	for _, line := range s.t.expire(now) {
		s.ensuredAt[line] = time.Time{}
		c, cancel := context.WithTimeout(ctx, lineTimeout)
		if err := s.opts.Lines.RemoveLine(c, line); err != nil {
			s.t.logLimited("remove", now, slog.LevelWarn, "DHCP: removing an unused line's address from the phone port failed", "line", line, "err", err)
		}
		cancel()
	}
}

// persist saves structural changes at once and last-seen times at most
// once per seenFlushEvery (SD card wear).
func (s *Server) persist(now time.Time) {
	if !s.t.dirty && !(s.t.seenDirty && now.Sub(s.lastSave) >= seenFlushEvery) {
		return
	}
	if err := s.save(now); err != nil {
		s.t.logLimited("save", now, slog.LevelError, "DHCP: saving phone bindings failed; lines may change after a restart", "err", err)
	}
}

func (s *Server) save(now time.Time) error {
	if err := s.t.save(s.leasesPath); err != nil {
		return err
	}
	s.t.dirty, s.t.seenDirty = false, false
	s.lastSave = now
	return nil
}

func (s *Server) noteUserAgent(n uaNote) {
	if !numplan.ValidLine(n.line) {
		return
	}
	b := s.t.byLine[n.line]
	if ua := text(n.ua); b != nil && ua != "" && ua != b.UserAgent {
		b.UserAgent = ua
		s.t.dirty = true
		s.persist(s.now())
	}
}

// call runs f on the Run goroutine and waits for it. Phones, Forget,
// LineOf and Stats go through it: before Run starts they wait (bounded by
// ctx), after Run returns they fail with ErrClosed.
func (s *Server) call(ctx context.Context, f func()) error {
	ran := make(chan struct{})
	select {
	case s.reqs <- func() { f(); close(ran) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrClosed
	}
	select {
	case <-ran:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrClosed
	}
}

// Phones returns the bound phones ordered by line.
func (s *Server) Phones(ctx context.Context) ([]Phone, error) {
	var out []Phone
	err := s.call(ctx, func() {
		for _, b := range s.t.bindings() {
			out = append(out, phoneOf(b))
		}
	})
	return out, err
}

func phoneOf(b *binding) Phone {
	vendor, model := identify(b.UserAgent, b.VendorClass)
	return Phone{
		Line: b.Line, MAC: b.MAC.String(), Vendor: vendor, Model: model, Hostname: b.Hostname,
		Addr: phoneAddr(b.Line), Bound: b.Bound, LastSeen: b.LastSeen, UserAgent: b.UserAgent,
	}
}

// Forget frees line: its binding is removed (and saved), and the Pi's
// address of the line is taken off the port. The phone, if still plugged
// in, gets the next free line at its next DISCOVER.
func (s *Server) Forget(ctx context.Context, line int) error {
	if !numplan.ValidLine(line) {
		return fmt.Errorf("line %d is outside %d..%d", line, numplan.MinLine, numplan.MaxLine)
	}
	var err error
	cerr := s.call(ctx, func() {
		b, o := s.t.byLine[line], s.t.offered[line]
		if b == nil && o == nil {
			err = fmt.Errorf("forgetting line %d: %w (see `peerline phones`)", line, ErrNoPhone)
			return
		}
		if o != nil {
			s.t.dropOffer(o)
		}
		if b != nil {
			s.t.remove(b)
			if err = s.save(s.now()); err != nil {
				return
			}
			s.log.Info("DHCP: phone forgotten, line freed", "line", line, "mac", b.MAC.String())
		}
		s.ensuredAt[line] = time.Time{}
		c, cancel := context.WithTimeout(ctx, lineTimeout)
		defer cancel()
		if rerr := s.opts.Lines.RemoveLine(c, line); rerr != nil {
			err = fmt.Errorf("line %d is free, but removing %s from the phone port failed (restart peerline to clean up): %w",
				line, numplan.LinePrefix(uint8(line)), rerr)
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// LineOf returns the phone bound to addr (10.0.s.1).
func (s *Server) LineOf(ctx context.Context, addr netip.Addr) (mac net.HardwareAddr, line int, ok bool) {
	l, isPhone := numplan.LocalPhone(addr.Unmap())
	if !isPhone {
		return nil, 0, false
	}
	err := s.call(ctx, func() {
		if b := s.t.byLine[l]; b != nil {
			mac, line, ok = net.HardwareAddr(slices.Clone(b.MAC[:])), l, true
		}
	})
	if err != nil {
		return nil, 0, false
	}
	return mac, line, ok
}

// NoteUserAgent records the HTTP User-Agent the provisioning server saw
// from line's phone. It never blocks: if the server is busy the note is
// dropped (the phone will fetch again).
func (s *Server) NoteUserAgent(line int, ua string) {
	select {
	case s.uas <- uaNote{line: line, ua: ua}:
	default:
	}
}

// Stats returns the server's counters.
func (s *Server) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := s.call(ctx, func() { st = s.t.snapshot() })
	st.QueueFull = s.queueFull.Load()
	return st, err
}
