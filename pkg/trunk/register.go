package trunk

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// State is where a trunk's registration stands.
type State string

const (
	Registering State = "registering"
	Registered  State = "registered"
	Failed      State = "failed"
	Stopped     State = "stopped"
)

// Status is a trunk's state for the control API, `peerline trunks`, the
// status page and metrics.
type Status struct {
	Name  string
	State State
	// Detail says why it failed ("403 Forbidden", "no answer from
	// sip.example:5060"), in words a user can act on.
	Detail string
	// Contact is the address the provider has for us: our public
	// address as the provider saw it, once learned.
	Contact string
	// Until is when the registration runs out (Registered).
	Until time.Time
	// RetryAt is when the next attempt is due (Failed).
	RetryAt time.Time
	// Calls is the number of calls up through this trunk now.
	Calls int
	// Failures counts failed attempts since the last success.
	Failures int
}

// String is the one-line form: "registered", "failed: 403 Forbidden,
// retrying in 20 s".
func (s Status) String() string {
	switch s.State {
	case Failed:
		left := time.Until(s.RetryAt).Round(time.Second)
		return fmt.Sprintf("failed: %s, retrying in %d s", s.Detail, max(int(left/time.Second), 0))
	case Registered:
		return "registered"
	}
	return string(s.State)
}

// retryDelay is the wait after the n-th failure in a row: 5 s doubling to
// 5 min, so a wrong password does not hammer the provider (some block an
// account after a few quick failures) and a fixed one recovers soon.
func retryDelay(failures int) time.Duration {
	d := 5 * time.Second
	for i := 1; i < failures && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

// refreshDelay is when to renew a registration the provider granted for
// granted seconds: at 80 %, and no later than 30 s before it runs out.
func refreshDelay(granted int) time.Duration {
	g := time.Duration(granted) * time.Second
	return max(min(g*8/10, g-30*time.Second), g/2)
}

// grantedExpires reads the lifetime the registrar granted our contact
// (RFC 3261 §10.2.4: the expires parameter of our Contact in the 200, else
// the Expires header), defaulting to what we asked for.
func grantedExpires(res *sip.Response, asked int, ours sip.Uri) int {
	for _, h := range res.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok || c.Address.User != ours.User || !strings.EqualFold(c.Address.Host, ours.Host) || portOr5060(c.Address.Port) != portOr5060(ours.Port) {
			continue
		}
		if v, ok := c.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return n
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 {
			return n
		}
	}
	return asked
}

func portOr5060(p int) int {
	if p == 0 {
		return 5060
	}
	return p
}

// seenAs reads the address the registrar saw our request come from
// (RFC 3581: received and rport on our Via), which is our NAT's mapping.
func seenAs(res *sip.Response) (netip.AddrPort, bool) {
	via := res.Via()
	if via == nil {
		return netip.AddrPort{}, false
	}
	recv, ok := via.Params.Get("received")
	if !ok {
		return netip.AddrPort{}, false
	}
	a, err := netip.ParseAddr(recv)
	if err != nil {
		return netip.AddrPort{}, false
	}
	port := via.Port
	if rp, ok := via.Params.Get("rport"); ok {
		if n, err := strconv.Atoi(rp); err == nil && n > 0 && n < 65536 {
			port = n
		}
	}
	return netip.AddrPortFrom(a, uint16(portOr5060(port))), true
}

// errRegister is a final refusal by the registrar.
type errRegister struct {
	code   int
	reason string
}

func (e *errRegister) Error() string { return fmt.Sprintf("%d %s", e.code, e.reason) }

// registerOnce sends one REGISTER (answering one digest challenge) and
// returns the granted lifetime and the address the registrar saw. A
// valid stale contact is removed in the same request (expires=0): the
// address we registered before we knew our NAT mapping, which the
// registrar would otherwise keep ringing next to the right one.
func (t *Trunk) registerOnce(ctx context.Context, expires int, stale sip.Uri) (granted int, seen netip.AddrPort, err error) {
	t.resolveProvider()
	t.regCSeq++
	contact := t.contactURI()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: t.cfg.SIPDomain()})
	req.SetDestination(t.registrar)
	aor := sip.Uri{Scheme: "sip", User: t.cfg.User, Host: t.cfg.SIPDomain()}
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", t.regTag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	cid := sip.CallIDHeader(t.regCallID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: t.regCSeq, MethodName: sip.REGISTER})
	req.AppendHeader(&sip.ContactHeader{Address: contact, Params: sip.NewParams()})
	if stale.Host != "" {
		p := sip.NewParams()
		p.Add("expires", "0")
		req.AppendHeader(&sip.ContactHeader{Address: stale, Params: p})
	}
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))

	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := t.up.cli.Do(rctx, req)
	if err == nil && (res.StatusCode == sip.StatusUnauthorized || res.StatusCode == sip.StatusProxyAuthRequired) {
		t.regCSeq++
		res, err = t.up.cli.DoDigestAuth(rctx, req, res, sipgo.DigestAuth{Username: t.cfg.DigestUser(), Password: t.cfg.Password})
		if c := req.CSeq(); c != nil {
			t.regCSeq = c.SeqNo
		}
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sip.ErrTransactionTimeout) {
			return 0, seen, fmt.Errorf("no answer from %s: check the registrar address and that the uplink reaches it", t.cfg.Registrar)
		}
		return 0, seen, fmt.Errorf("registering at %s: %w", t.cfg.Registrar, err)
	}
	seen, _ = seenAs(res)
	if res.StatusCode == sip.StatusIntervalToBrief && expires > 0 {
		// RFC 3261 §10.3 step 7: ask again with at least Min-Expires.
		if h := res.GetHeader("Min-Expires"); h != nil {
			if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > expires && n <= 86400 {
				t.expires = n
				return t.registerOnce(ctx, n, stale)
			}
		}
	}
	if res.StatusCode != sip.StatusOK {
		e := &errRegister{code: res.StatusCode, reason: res.Reason}
		if res.StatusCode == sip.StatusUnauthorized || res.StatusCode == sip.StatusProxyAuthRequired || res.StatusCode == sip.StatusForbidden {
			return 0, seen, fmt.Errorf("%w: check the trunk's user and password", e)
		}
		return 0, seen, e
	}
	return grantedExpires(res, expires, contact), seen, nil
}

// runRegister keeps the registration up until ctx ends, then removes it.
func (t *Trunk) runRegister(ctx context.Context) {
	t.log.Info("trunk: registration started", "registrar", t.cfg.Registrar, "user", t.cfg.User)
	defer t.log.Info("trunk: registration stopped")
	failures := 0
	for {
		t.setStatus(func(s *Status) {
			if s.State != Registered {
				s.State = Registering
			}
		})
		granted, seen, err := t.registerOnce(ctx, t.expires, sip.Uri{})
		if err == nil && seen.IsValid() && seen != t.public() {
			// Behind a NAT (or the NAT's mapping changed): the
			// provider must send calls to the mapping it saw, and
			// only there.
			old := t.contactURI()
			t.setPublic(seen)
			t.log.Info("trunk: provider sees us at a NAT mapping; registering that", "contact", seen)
			granted, _, err = t.registerOnce(ctx, t.expires, old)
		}
		if ctx.Err() != nil {
			break
		}
		var wait time.Duration
		if err != nil {
			failures++
			wait = retryDelay(failures)
			t.log.Warn("trunk: registration failed", "err", err, "retry_in", wait)
			t.setStatus(func(s *Status) {
				*s = Status{Name: s.Name, State: Failed, Detail: err.Error(), RetryAt: time.Now().Add(wait), Failures: failures}
			})
		} else {
			failures = 0
			wait = refreshDelay(granted)
			contact := t.contactURI()
			t.log.Info("trunk: registered", "contact", contact.String(), "expires", granted)
			t.setStatus(func(s *Status) {
				*s = Status{Name: s.Name, State: Registered, Contact: contact.String(), Until: time.Now().Add(time.Duration(granted) * time.Second)}
			})
		}
		if !t.sleepWithKeepalive(ctx, wait) {
			break
		}
	}
	// Unregister, bounded: the provider should stop sending calls to a
	// Pi that is going away.
	if t.Status().State == Registered {
		uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _, _ = t.registerOnce(uctx, 0, sip.Uri{})
		cancel()
	}
	t.setStatus(func(s *Status) { *s = Status{Name: s.Name, State: Stopped} })
}

// KeepaliveInterval keeps the NAT's mapping for the signalling socket
// open between registrations: RFC 5626's CRLF keepalive, well under the
// 30 s many home routers give a UDP mapping.
const KeepaliveInterval = 15 * time.Second

func (t *Trunk) sleepWithKeepalive(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(left, KeepaliveInterval)):
			if time.Until(deadline) > 0 {
				t.keepalive()
			}
		}
	}
}

func (t *Trunk) keepalive() {
	if t.registrarUDP == nil {
		return
	}
	if _, err := t.up.conn.WriteTo([]byte("\r\n\r\n"), t.registrarUDP); err != nil {
		t.log.Debug("trunk: keepalive", "err", err)
	}
}
