// Package dnsfwd is the Pi's DNS service on the phone port: phones are told
// (DHCP option 6) that the Pi is their name server, and the Pi forwards
// their queries to its own resolvers (on the appliance, systemd-resolved).
//
// It answers only on the phone port, only standard queries with one
// question, and with a bounded number of queries in flight; anything else
// gets an error answer, never more than a forwarded answer would be.
package dnsfwd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/miekg/dns"

	"github.com/peerline/peerline/pkg/devsock"
)

// ResolvConf is where the upstream resolvers are read from when none are
// given.
const ResolvConf = "/etc/resolv.conf"

const (
	// maxInFlight bounds the queries being forwarded at once; a phone
	// sends a handful, a flood gets SERVFAIL instead of goroutines.
	maxInFlight = 32
	// upstreamTimeout bounds one forward attempt.
	upstreamTimeout = 2 * time.Second
)

// Options configure a Server.
type Options struct {
	// Port is the phone port; the socket is bound to it.
	Port string
	// Upstreams are "host:port" resolvers; empty means those of ResolvConf.
	Upstreams []string
	Log       *slog.Logger
	// ListenPacket opens the UDP socket; nil means UDP :53 bound to Port.
	ListenPacket func(ifname string) (net.PacketConn, error)
}

// Server forwards the phones' DNS queries.
type Server struct {
	opts     Options
	log      *slog.Logger
	slots    chan struct{}
	exchange func(ctx context.Context, m *dns.Msg, upstream string) (*dns.Msg, error)
}

// New checks opts and returns a Server; Run starts it.
func New(opts Options) (*Server, error) {
	if opts.Port == "" && opts.ListenPacket == nil {
		return nil, errors.New("dnsfwd: Options.Port is required so that nothing is served on the uplink")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.ListenPacket == nil {
		opts.ListenPacket = func(ifname string) (net.PacketConn, error) {
			return devsock.ListenPacket(context.Background(), "udp4", ":53", ifname)
		}
	}
	c := &dns.Client{Net: "udp", Timeout: upstreamTimeout}
	return &Server{
		opts:  opts,
		log:   opts.Log,
		slots: make(chan struct{}, maxInFlight),
		exchange: func(ctx context.Context, m *dns.Msg, upstream string) (*dns.Msg, error) {
			r, _, err := c.ExchangeContext(ctx, m, upstream)
			return r, err
		},
	}, nil
}

// upstreams are the resolvers to ask, read afresh per query so that a
// resolv.conf rewritten when the uplink changes is followed.
func (s *Server) upstreams() ([]string, error) {
	if len(s.opts.Upstreams) > 0 {
		return s.opts.Upstreams, nil
	}
	cc, err := dns.ClientConfigFromFile(ResolvConf)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ResolvConf, err)
	}
	var ups []string
	for _, a := range cc.Servers {
		ups = append(ups, net.JoinHostPort(a, cc.Port))
	}
	if len(ups) == 0 {
		return nil, fmt.Errorf("%s lists no name server", ResolvConf)
	}
	return ups, nil
}

// Run serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	pc, err := s.opts.ListenPacket(s.opts.Port)
	if err != nil {
		return fmt.Errorf("DNS for the phones on %s (is another DNS server using port 53 on all interfaces?): %w", s.opts.Port, err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if m := s.answer(ctx, r); m != nil {
			w.WriteMsg(m)
		}
	})}
	stop := context.AfterFunc(ctx, func() { srv.Shutdown() })
	defer stop()
	s.log.Info("DNS forwarder started", "addr", pc.LocalAddr().String())
	if err := srv.ActivateAndServe(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("DNS for the phones: %w", err)
	}
	return nil
}

// check decides what a query deserves before any forwarding: nil means
// forward it, otherwise the error answer to send.
func check(r *dns.Msg) *dns.Msg {
	fail := func(rcode int) *dns.Msg {
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		m.Question = nil
		if len(r.Question) == 1 {
			m.Question = r.Question
		}
		return m
	}
	switch {
	case r.Opcode != dns.OpcodeQuery:
		return fail(dns.RcodeNotImplemented)
	case len(r.Question) != 1:
		return fail(dns.RcodeFormatError)
	case r.Question[0].Qtype == dns.TypeAXFR || r.Question[0].Qtype == dns.TypeIXFR || r.Question[0].Qtype == dns.TypeANY:
		return fail(dns.RcodeRefused)
	}
	return nil
}

// answer forwards r to the upstreams in turn and returns the first answer,
// or SERVFAIL. It returns nil (no reply at all) for a message that is
// itself a response.
func (s *Server) answer(ctx context.Context, r *dns.Msg) *dns.Msg {
	if r.Response {
		// Never answer an answer: that is how reflection loops start.
		return nil
	}
	if m := check(r); m != nil {
		return m
	}
	servfail := new(dns.Msg)
	servfail.SetRcode(r, dns.RcodeServerFailure)
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		return servfail
	}
	ups, err := s.upstreams()
	if err != nil {
		s.log.Warn("phones' DNS queries cannot be forwarded", "err", err)
		return servfail
	}
	for _, up := range ups {
		ctx, cancel := context.WithTimeout(ctx, upstreamTimeout)
		resp, err := s.exchange(ctx, r, up)
		cancel()
		if err == nil && resp != nil {
			resp.Id = r.Id
			return resp
		}
		s.log.Debug("upstream resolver failed", "upstream", up, "err", err)
	}
	return servfail
}
