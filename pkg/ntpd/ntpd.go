// Package ntpd is the phone port's time server: a small SNTP server
// (RFC 4330, server side of RFC 5905) that answers phones with the Pi's
// system clock, which systemd-timesyncd or chrony keep in step over the
// uplink. DHCP option 42 points phones here, so they get the time without
// reaching the Internet themselves.
//
// It is stateless per request apart from a bounded per-source rate limit,
// answers only client-mode requests with a reply no larger than the
// request, and refuses to hand out time while the Pi's clock is not
// synchronized (a Pi has no RTC: until the first sync its clock is wrong by
// however long it was off).
package ntpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// Options configures a Server.
type Options struct {
	// Port is the phone port; the socket is bound to it (SO_BINDTODEVICE)
	// so that nothing is answered on the uplink.
	Port string
	Log  *slog.Logger
	// Now is the clock served; nil means time.Now. Tests replace it.
	Now func() time.Time
	// Synced reports whether the system clock is synchronized; nil means
	// the kernel's view (adjtimex: no STA_UNSYNC), which also supplies the
	// error bound sent as root dispersion.
	Synced func() bool
	// Listen opens the UDP socket; nil means ListenUDP (UDP :123 bound to
	// ifname in the current network namespace).
	Listen func(ifname string) (net.PacketConn, error)
}

// Limits on what the server does for one source and in total.
const (
	rateBurst   = 8    // requests a source may send at once (phones retry at boot)
	ratePerSec  = 0.5  // sustained requests per source
	maxSources  = 1024 // rate-limit entries kept; bounds memory under a spoofed flood
	readBufSize = 1024 // larger datagrams are truncated, which parseRequest tolerates
	// fallbackMaxError is the root dispersion claimed when Options.Synced
	// replaces the kernel's view and so no error bound is known.
	fallbackMaxError = 100 * time.Millisecond
)

// Server answers SNTP requests on the phone port.
type Server struct {
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	clock  func() Clock
	listen func(string) (net.PacketConn, error)
}

// New checks opts and returns a Server; Run starts it.
func New(opts Options) (*Server, error) {
	if opts.Port == "" {
		return nil, errors.New("ntpd: Options.Port is required: name the phone port (e.g. eth0) so that no time is served on the uplink")
	}
	s := &Server{opts: opts, log: opts.Log, now: opts.Now, listen: opts.Listen}
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
	if opts.Synced != nil {
		s.clock = func() Clock { return Clock{Synced: opts.Synced(), MaxError: fallbackMaxError} }
	} else {
		s.clock = systemClock
	}
	return s, nil
}

// Run serves until ctx is done and returns nil then; it returns an error if
// the socket cannot be opened or fails.
func (s *Server) Run(ctx context.Context) error {
	conn, err := s.listen(s.opts.Port)
	if err != nil {
		return fmt.Errorf("listening for NTP on %s UDP 123 (is chrony or ntpd serving the port? it must not): %w", s.opts.Port, err)
	}
	s.log.Info("NTP server started", "addr", conn.LocalAddr().String())
	defer s.log.Info("NTP server stopped")
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	return s.serve(ctx, conn)
}

// serve is the one goroutine that owns the limiter and the counters.
func (s *Server) serve(ctx context.Context, conn net.PacketConn) error {
	lim := newLimiter(rateBurst, ratePerSec, maxSources)
	buf := make([]byte, readBufSize)
	var (
		lastSynced            = true // so that an unsynced start is logged
		dropped, limited, ans uint64
		lastReport            time.Time
	)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				s.log.Info("NTP server counters", "answered", ans, "malformed", dropped, "rate_limited", limited)
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("reading NTP requests on %s: %w", s.opts.Port, err)
		}
		rx := s.now()
		ap, ok := addrPort(from)
		if !ok {
			dropped++
			continue
		}
		if !lim.allow(ap.Addr(), rx) {
			limited++
			continue
		}
		c := s.clock()
		if c.Synced != lastSynced {
			if c.Synced {
				s.log.Info("system clock synchronized: phones get the time")
			} else {
				s.log.Warn("system clock not synchronized (no upstream NTP yet?): phones are told to wait (kiss-o'-death INIT) instead of being given a wrong time")
			}
			lastSynced = c.Synced
		}
		resp, ok := Respond(buf[:n], rx, s.now(), c)
		if !ok {
			dropped++
			continue
		}
		if _, err := conn.WriteTo(resp, from); err != nil {
			// A phone that went away is no reason to stop serving the others.
			s.log.Debug("NTP answer not sent", "addr", from.String(), "err", err)
			continue
		}
		ans++
		// Counters instead of per-packet logs, at most once an hour.
		if rx.Sub(lastReport) >= time.Hour && (dropped > 0 || limited > 0) {
			s.log.Info("NTP server counters", "answered", ans, "malformed", dropped, "rate_limited", limited)
			lastReport = rx
		}
	}
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}
