// Package trunk connects the Pi to an outside SIP account (an Internet
// telephony provider or a company PBX), built on github.com/emiago/sipgo.
//
// What a trunk does:
//   - registers upstream with the account (digest authentication),
//     refreshes before expiry, keeps the home NAT's mapping open, backs off
//     after failures and shows why it failed (Status);
//   - rings the configured line when the provider sends a call, and
//     sends numbers dialled on a line out through the provider with the
//     account's caller ID;
//   - relays every trunk call's media itself (pkg/rtprelay), because the
//     phone's address is private to the Pi and the Pi's is private to the
//     home NAT.
//
// The Pi is a back-to-back user agent (B2BUA) here, not a proxy: the
// phone's dialog ends at the Pi and a second dialog runs to the provider.
// That is what lets the Pi put its relay into both SDPs, present the
// account's identity to the provider (and only the caller's name and
// number to the phone), and apply the anonymous-call policy.
//
// A trunk has two sockets: the uplink one, which talks to the provider,
// and a phone-side one on the Pi's phone port, which phones call (the SIP
// service redirects a number routed to a trunk there: LocalURI) and from
// which the trunk rings them.
package trunk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/peerline/peerline/pkg/privacy"
	"github.com/peerline/peerline/pkg/rtprelay"
	"github.com/peerline/peerline/pkg/trunkconfig"
)

// Config is one trunk's configuration (pkg/trunkconfig, so that the pure
// pkg/config can hold it).
type Config = trunkconfig.Config

// Options are what a trunk needs besides its Config.
type Options struct {
	Config Config
	// Uplink is a bound UDP socket on the Pi's uplink; the trunk owns it.
	Uplink net.PacketConn
	// Phones is a bound UDP socket on the phone side (a specific address
	// such as 10.0.1.2:5062, since it goes into Via and Contact); the
	// trunk owns it.
	Phones net.PacketConn
	// Relays opens each call's media relay: its local side binds on the
	// phone side, its remote side on the uplink.
	Relays *rtprelay.Pool
	// Ring is the URI that rings a line's phone; nil means
	// sip:<s>@10.0.s.1, the phone's address on the Pi's phone port.
	Ring func(line int) sip.Uri
	// LineOf says which line a phone-side address belongs to; nil means
	// the numbering plan's 10.0.s.1 → s.
	LineOf func(netip.Addr) int
	// Anonymous is the node's anonymous-call policy; this trunk's entry
	// is Trunks[Config.Name].
	Anonymous privacy.Policy
	// Withhold says when outgoing calls hide the caller's identity.
	Withhold privacy.Withhold
	Log      *slog.Logger
}

// sipLeg is one side's SIP stack: a sipgo user agent serving one socket.
type sipLeg struct {
	conn net.PacketConn
	addr netip.AddrPort // conn's address, for Via and Contact
	ua   *sipgo.UserAgent
	srv  *sipgo.Server
	cli  *sipgo.Client
	dua  *sipgo.DialogUA
}

// Trunk is one running trunk. Make it with New, run it with Run.
type Trunk struct {
	cfg  Config
	opts Options
	log  *slog.Logger
	up   sipLeg
	loc  sipLeg

	registrar    string       // host:port the REGISTERs and INVITEs go to
	registrarUDP *net.UDPAddr // for keepalives; nil if it did not resolve yet

	// Owned by the registration goroutine.
	regCallID string
	regTag    string
	regCSeq   uint32
	expires   int // asked for; raised by a 423's Min-Expires

	mu sync.Mutex
	// mu guards the following fields.
	status    Status
	publicAP  netip.AddrPort // our address as the provider sees it
	provider  []netip.Prefix // where calls may come from: the registrar's addresses and AcceptFrom
	anonymous privacy.Policy
	calls     map[string]*call
}

// New checks the options and sets up both SIP stacks; nothing is sent
// before Run.
func New(opts Options) (*Trunk, error) {
	if opts.Uplink == nil || opts.Phones == nil || opts.Relays == nil {
		return nil, errors.New("trunk: Uplink, Phones and Relays are required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	t := &Trunk{
		cfg:       opts.Config,
		opts:      opts,
		log:       opts.Log.With("trunk", opts.Config.Name),
		registrar: opts.Config.RegistrarAddr(),
		regCallID: sip.GenerateTagN(24),
		regTag:    sip.GenerateTagN(12),
		regCSeq:   1,
		expires:   opts.Config.ExpiresOrDefault(),
		calls:     map[string]*call{},
		status:    Status{Name: opts.Config.Name, State: Registering},
		anonymous: opts.Anonymous,
	}
	if a, err := net.ResolveUDPAddr("udp4", t.registrar); err == nil {
		t.registrarUDP = a
	}
	extra, err := opts.Config.AcceptPrefixes()
	if err != nil {
		return nil, fmt.Errorf("trunk %s: %w", opts.Config.Name, err)
	}
	t.provider = extra
	t.resolveProvider()
	if t.up, err = newLeg(opts.Uplink, "uplink", t.log); err != nil {
		return nil, err
	}
	if t.loc, err = newLeg(opts.Phones, "phones", t.log); err != nil {
		t.up.ua.Close()
		return nil, err
	}
	t.publicAP = t.up.addr
	for _, l := range []*sipLeg{&t.up, &t.loc} {
		l.srv.OnInvite(t.onInvite(l))
		l.srv.OnAck(t.onAck)
		l.srv.OnBye(t.onBye)
		l.srv.OnUpdate(t.onUpdate)
		l.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
		})
	}
	return t, nil
}

func newLeg(conn net.PacketConn, name string, log *slog.Logger) (sipLeg, error) {
	ap := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if ap.Addr().IsUnspecified() {
		return sipLeg{}, fmt.Errorf("trunk: the %s socket is bound to %s; bind it to the address phones and the provider reach", name, ap)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("peerline"), sipgo.WithUserAgentHostname(ap.Addr().String()))
	if err != nil {
		return sipLeg{}, fmt.Errorf("trunk: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		ua.Close()
		return sipLeg{}, fmt.Errorf("trunk: %w", err)
	}
	cli, err := sipgo.NewClient(ua, sipgo.WithClientLogger(log), sipgo.WithClientHostname(ap.Addr().String()),
		sipgo.WithClientPort(int(ap.Port())), sipgo.WithClientConnectionAddr(ap.String()), sipgo.WithClientNAT())
	if err != nil {
		ua.Close()
		return sipLeg{}, fmt.Errorf("trunk: %w", err)
	}
	dua := &sipgo.DialogUA{Client: cli, ContactHDR: sip.ContactHeader{
		Address: sip.Uri{Scheme: "sip", User: "peerline", Host: ap.Addr().String(), Port: int(ap.Port())},
	}}
	return sipLeg{conn: conn, addr: ap, ua: ua, srv: srv, cli: cli, dua: dua}, nil
}

// resolveProvider adds the registrar's current addresses to the ones calls
// may come from; called at start and before each registration, so a
// provider that moves is followed.
func (t *Trunk) resolveProvider() {
	host, _, err := net.SplitHostPort(t.registrar)
	if err != nil {
		return
	}
	addrs, err := net.LookupHost(host)
	if err != nil {
		t.log.Debug("trunk: resolving the registrar", "err", err)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range addrs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		p := netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		if !slices.Contains(t.provider, p) {
			t.provider = append(t.provider, p)
		}
	}
}

// fromProvider says whether a request from src may be the provider's.
func (t *Trunk) fromProvider(src netip.Addr) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.provider {
		if p.Contains(src.Unmap()) {
			return true
		}
	}
	return false
}

// Name is the trunk's configured name.
func (t *Trunk) Name() string { return t.cfg.Name }

// LocalURI is the trunk's phone-side address with dialled as the user:
// what a phone calls to reach the trunk. The trunk reads dialled as a
// user would dial it on the phone: an optional withhold prefix, then the
// trunk's prefix, then the number.
func (t *Trunk) LocalURI(dialled string) sip.Uri {
	return sip.Uri{Scheme: "sip", User: dialled, Host: t.loc.addr.Addr().String(), Port: int(t.loc.addr.Port())}
}

// CallURI is where the SIP service redirects a call the dial plan sent to
// this trunk with the number to call at the provider (a rule's rewrite,
// or the dialled string without the prefix): the trunk's prefix is put
// back, so that exactly that number goes out, even one that starts with
// the prefix's digits. withhold (the caller dialled the withhold prefix,
// which the SIP service removed before routing) puts that prefix back
// too.
func (t *Trunk) CallURI(number string, withhold bool) sip.Uri {
	if withhold && t.opts.Withhold.Prefix != "" {
		return t.LocalURI(t.opts.Withhold.Prefix + t.cfg.Prefix + number)
	}
	return t.LocalURI(t.cfg.Prefix + number)
}

// SetAnonymous replaces the anonymous-call policy (a config reload); calls
// already up are not affected.
func (t *Trunk) SetAnonymous(p privacy.Policy) {
	t.mu.Lock()
	t.anonymous = p
	t.mu.Unlock()
}

func (t *Trunk) anonymousPolicy() privacy.Policy {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.anonymous
}

// Status returns the trunk's current state.
func (t *Trunk) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.status
	s.Calls = len(t.uniqueCallsLocked())
	return s
}

func (t *Trunk) setStatus(f func(*Status)) {
	t.mu.Lock()
	f(&t.status)
	t.mu.Unlock()
}

func (t *Trunk) public() netip.AddrPort {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.publicAP
}

func (t *Trunk) setPublic(ap netip.AddrPort) {
	t.mu.Lock()
	t.publicAP = ap
	t.mu.Unlock()
}

// contactURI is the Contact the provider gets: our public address once
// the registrar told us, else the uplink's own.
func (t *Trunk) contactURI() sip.Uri {
	p := t.public()
	return sip.Uri{Scheme: "sip", User: t.cfg.User, Host: p.Addr().String(), Port: int(p.Port())}
}

// Run serves both sockets and keeps the registration up until ctx ends.
// It returns nil on cancel; an error only if a socket fails. Calls still
// up at the end are hung up.
func (t *Trunk) Run(ctx context.Context) error {
	t.log.Info("trunk: started", "uplink", t.up.addr, "phones", t.loc.addr)
	defer t.log.Info("trunk: stopped")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	for _, l := range []*sipLeg{&t.up, &t.loc} {
		go func() { errc <- l.srv.ServeUDP(l.conn) }()
	}
	// The registration must go out of the served socket (the NAT
	// mapping the provider learns is that socket's), so wait until
	// sipgo has it in its connection pool.
	for i := 0; ; i++ {
		_, errUp := t.up.ua.TransportLayer().GetConnection("udp", t.up.addr.String())
		_, errLoc := t.loc.ua.TransportLayer().GetConnection("udp", t.loc.addr.String())
		if errUp == nil && errLoc == nil {
			break
		}
		if i == 200 {
			t.up.conn.Close()
			t.loc.conn.Close()
			t.up.ua.Close()
			t.loc.ua.Close()
			return fmt.Errorf("trunk %s: the SIP sockets did not come up within 2 s", t.cfg.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	regDone := make(chan struct{})
	go func() {
		t.runRegister(ctx)
		close(regDone)
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if err != nil {
			err = fmt.Errorf("trunk %s: serving SIP: %w", t.cfg.Name, err)
		}
	}
	cancel()
	<-regDone
	t.hangupAll()
	t.up.conn.Close()
	t.loc.conn.Close()
	t.up.ua.Close()
	t.loc.ua.Close()
	return err
}
