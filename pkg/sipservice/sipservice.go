// Package sipservice is the Pi's SIP service on each line's Pi address
// (10.0.s.2:5060, phone port only): it takes phones' registrations and
// turns numbers and names they dial into the address they could have
// dialled themselves.
//
// It redirects rather than proxies: an INVITE to `7*2` or `alice.2` is
// answered with 302 and Contact sip:2@10.7.2.1, and the phone calls that
// address directly, through the packet rewriter, exactly like a call
// dialled by IP. Why a redirect:
//   - the Pi keeps no call state: a crash or restart of the service never
//     drops a call, and the media and in-dialog requests take the path
//     direct calls already take and that the lab checks;
//   - the firewall does not change: the only new listener is on the phone
//     port, and a peer never reaches it;
//   - the caller's own From (display name, line) reaches the far phone
//     unchanged, and the rewriter maps its address, so the far phone shows
//     who calls and can call back by address.
//
// INVITEs are not authenticated: a redirect tells a phone on the phone
// port nothing it could not reach by dialling the address itself.
package sipservice

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/peerline/peerline/pkg/devsock"
	"github.com/peerline/peerline/pkg/dialplan"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/privacy"
	"github.com/peerline/peerline/pkg/registrar"
)

// Routes returns the current dial plan and the node's view to route
// against; called per INVITE, so pairings and config reloads apply at once.
type Routes func() (*dialplan.Plan, dialplan.Env)

// TrunkURI returns where a phone is redirected to call number through the
// trunk called name (its phone-side socket: trunk.CallURI); ok is false,
// with why, when the trunk is not running.
type TrunkURI func(name, number string, withhold bool) (uri sip.Uri, why string, ok bool)

// Service answers REGISTER, INVITE and OPTIONS on the Pi's line
// addresses.
type Service struct {
	Registrar *registrar.Registrar
	Routes    Routes
	// Trunk, if set, redirects calls the dial plan sends to a trunk;
	// without it they are refused with 503.
	Trunk TrunkURI
	// Withhold, if set, returns the config's withhold prefix
	// (privacy.Withhold.Prefix): dialled before a number, it is removed
	// before routing and the trunk withholds the caller's identity.
	Withhold func() string
	Log      *slog.Logger

	mu     sync.Mutex
	recent []Call // the last MaxRecent decisions, oldest first
	counts [4]uint64
}

// MaxRecent is how many dial-plan decisions Recent keeps.
const MaxRecent = 32

// Call is one dial-plan decision, for the control API and the console.
type Call struct {
	Time time.Time `json:"time"`
	// From is the phone's address, Dialled the user@host it asked for.
	From    string `json:"from"`
	Dialled string `json:"dialled"`
	// Decision is "local", "peer", "trunk" or "refuse"; Code the SIP
	// status answered (302 for a redirect), Target where the phone was
	// sent.
	Decision string `json:"decision"`
	Code     int    `json:"code"`
	Target   string `json:"target,omitempty"`
	Reason   string `json:"reason"`
}

// Recent returns the last decisions, newest first.
func (s *Service) Recent() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.recent))
	for i, c := range s.recent {
		out[len(out)-1-i] = c
	}
	return out
}

// Counts returns how many calls each kind of decision took, by
// dialplan.Kind.
func (s *Service) Counts() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]uint64, len(s.counts))
	for k, n := range s.counts {
		m[dialplan.Kind(k).String()] = n
	}
	return m
}

func (s *Service) note(c Call, k dialplan.Kind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recent) == MaxRecent {
		s.recent = append(s.recent[:0], s.recent[1:]...)
	}
	s.recent = append(s.recent, c)
	if int(k) < len(s.counts) {
		s.counts[k]++
	}
}

// Port is where the service listens on the phone port.
const Port = 5060

// Run serves UDP 5060 on the phone port ifname until ctx ends. The socket
// is bound to the interface (SO_BINDTODEVICE), as the Pi's other phone-port
// services are: a request from the uplink or through a tunnel is never
// seen, so a peer can neither register nor use this node's dial plan.
func (s *Service) Run(ctx context.Context, ifname string) error {
	conn, err := devsock.ListenPacket(ctx, "udp4", ":"+strconv.Itoa(Port), ifname)
	if err != nil {
		return fmt.Errorf("listening for SIP on %s UDP %d (is another SIP server running on the Pi? stop it, or set sip.off in the config): %w", ifname, Port, err)
	}
	return s.Serve(ctx, conn)
}

// Serve answers on conn until ctx ends.
func (s *Service) Serve(ctx context.Context, conn net.PacketConn) error {
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("peerline"))
	if err != nil {
		return fmt.Errorf("sip service: %w", err)
	}
	defer ua.Close()
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(s.Log))
	if err != nil {
		return fmt.Errorf("sip service: %w", err)
	}
	srv.OnRegister(s.Registrar.Handle)
	srv.OnInvite(s.invite)
	srv.OnAck(func(*sip.Request, sip.ServerTransaction) {}) // ACK of a 3xx/4xx: the transaction layer is done with it
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", "REGISTER, INVITE, ACK, OPTIONS"))
		_ = tx.Respond(res)
	})
	srv.OnNoRoute(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, sip.StatusMethodNotAllowed, "Method Not Allowed", nil)
		res.AppendHeader(sip.NewHeader("Allow", "REGISTER, INVITE, ACK, OPTIONS"))
		_ = tx.Respond(res)
	})
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	err = srv.ServeUDP(conn)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("sip service on %s stopped: %w", conn.LocalAddr(), err)
}

func (s *Service) invite(req *sip.Request, tx sip.ServerTransaction) {
	res, d := s.decide(req)
	c := Call{
		Time: time.Now(), From: req.Source(), Dialled: truncate(req.Recipient.User) + "@" + truncate(req.Recipient.Host),
		Decision: d.Kind.String(), Code: res.StatusCode, Reason: d.Reason,
	}
	if ct := res.Contact(); ct != nil {
		c.Target = ct.Address.String()
	}
	s.note(c, d.Kind)
	s.Log.Info("sip service: call", "dialled", c.Dialled, "from", c.From,
		"decision", c.Decision, "code", c.Code, "target", c.Target, "reason", c.Reason)
	_ = tx.Respond(res)
}

// decide maps an INVITE to its answer; separate from invite so tests can
// run it without sockets.
func (s *Service) decide(req *sip.Request) (*sip.Response, dialplan.Decision) {
	plan, env := s.Routes()
	user, withheld := req.Recipient.User, false
	if s.Withhold != nil {
		// No lines: only the prefix withholds here; withholding by line is
		// the trunk's, which knows the calling line.
		user, withheld = privacy.Withhold{Prefix: s.Withhold()}.Apply(0, user)
	}
	d := plan.RouteURI(user, req.Recipient.Host, env)
	var contact sip.Uri
	switch d.Kind {
	case dialplan.Local, dialplan.Peer:
		// The user part is the line number, the account user the Pi
		// provisions on that line: desk phones take any user on a direct
		// call, softphones look their account up by it.
		contact = sip.Uri{Scheme: "sip", User: strconv.Itoa(d.Line), Host: numplan.Phone(uint8(d.Peer), uint8(d.Line)).String()}
		if withheld {
			// Peer and local calls go straight to the far phone, which
			// shows what the caller's phone sends; the Pi cannot hide it.
			d.Reason += " (the withhold prefix applies to trunk calls only)"
		}
	case dialplan.Trunk:
		if s.Trunk == nil {
			d = dialplan.Decision{Kind: dialplan.Refuse, Code: sip.StatusServiceUnavailable, Reason: "no trunks run on this node"}
			break
		}
		uri, why, ok := s.Trunk(d.Trunk, d.Number, withheld)
		if !ok {
			d = dialplan.Decision{Kind: dialplan.Refuse, Code: sip.StatusServiceUnavailable, Reason: fmt.Sprintf("trunk %s is not running: %s", d.Trunk, why)}
			break
		}
		if withheld {
			d.Reason += ", identity withheld"
		}
		// The trunk's phone-side socket takes the call from here: it
		// calls out as a back-to-back user agent, with the account's
		// identity and the Pi relaying the media (pkg/trunk).
		contact = uri
	}
	if d.Kind == dialplan.Refuse {
		return sip.NewResponseFromRequest(req, d.Code, reason(d.Code), nil), d
	}
	res := sip.NewResponseFromRequest(req, sip.StatusMovedTemporarily, "Moved Temporarily", nil)
	res.AppendHeader(&sip.ContactHeader{Address: contact})
	return res, d
}

func reason(code int) string {
	switch code {
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 484:
		return "Address Incomplete"
	case 485:
		return "Ambiguous"
	case 503:
		return "Service Unavailable"
	case 603:
		return "Decline"
	}
	return "Refused"
}

func truncate(s string) string {
	if len(s) > dialplan.MaxDialled {
		return s[:dialplan.MaxDialled]
	}
	return s
}
