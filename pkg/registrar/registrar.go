// Package registrar is the Pi's SIP registrar on the phone port. A phone
// logs in with its line's account (the user is the line number, the
// password one the Pi generated and provisioned), and the Pi learns where
// that line's phone listens, so the Pi's SIP service can ring it by
// number or name.
//
// Registering is optional: a phone that never registers is still called
// and calls by IP address exactly as before, through the packet rewriter.
// The registrar only adds what names and short numbers need.
//
// Built on github.com/emiago/sipgo (transactions, retransmissions and the
// parser); the authentication decisions are pkg/sipauth's.
package registrar

import (
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/peerline/peerline/pkg/sipauth"
)

// Expiry limits: phones ask for anything from 60 s to a day; a short
// maximum means a phone that was unplugged disappears from the table
// within an hour, and a minimum keeps a phone from re-registering every
// second.
const (
	MinExpires     = 60
	MaxExpires     = 3600
	DefaultExpires = 3600
)

// Binding is where a line's phone is registered.
type Binding struct {
	Line      int
	Contact   string // the phone's Contact URI as it sent it
	Source    netip.AddrPort
	UserAgent string
	// Digest is the algorithm the phone authenticated with, "SHA-256" or
	// "MD5": the owner can see which phones still use MD5.
	Digest  string
	Expires time.Time
}

// Accounts says which users exist: the line a user logs in as and its
// password. Looked up on every REGISTER, so a password changed on disk
// takes effect at once.
type Accounts func(user string) (line int, password string, ok bool)

// Registrar holds the bindings. Safe for concurrent use: sipgo calls the
// handler from its transaction goroutines.
type Registrar struct {
	auth     *sipauth.Authenticator
	accounts Accounts
	now      func() time.Time
	log      *slog.Logger

	mu       sync.Mutex
	bindings map[int]Binding
	stats    Stats
}

// Stats counts what the registrar decided, for status and metrics.
type Stats struct {
	Registered, Unregistered, Challenged, Refused, Limited uint64
}

// New returns a registrar; auth.Realm is the node's name (phones show
// it), the rest of auth may stay zero for the defaults.
func New(auth sipauth.Config, accounts Accounts, log *slog.Logger) *Registrar {
	return &Registrar{
		auth:     sipauth.New(auth),
		accounts: accounts,
		now:      time.Now,
		log:      log,
		bindings: make(map[int]Binding),
	}
}

// Lookup returns the live binding of a line.
func (r *Registrar) Lookup(line int) (Binding, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.bindings[line]
	if !ok || !r.now().Before(b.Expires) {
		return Binding{}, false
	}
	return b, true
}

// Unbind removes line's binding, if any (its phone was forgotten).
func (r *Registrar) Unbind(line int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.bindings[line]; ok {
		delete(r.bindings, line)
		r.stats.Unregistered++
	}
}

// Bindings returns the live bindings ordered by line.
func (r *Registrar) Bindings() []Binding {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var out []Binding
	for line, b := range r.bindings {
		if now.Before(b.Expires) {
			out = append(out, b)
		} else {
			delete(r.bindings, line)
		}
	}
	slices.SortFunc(out, func(a, b Binding) int { return a.Line - b.Line })
	return out
}

// Stats returns the counters.
func (r *Registrar) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Handle answers one REGISTER; the Pi's SIP service (pkg/sipservice)
// routes REGISTERs here.
func (r *Registrar) Handle(req *sip.Request, tx sip.ServerTransaction) {
	res := r.decide(req)
	if err := tx.Respond(res); err != nil {
		r.log.Debug("registrar: answering", "err", err)
	}
}

// decide turns a REGISTER into its response; split from handle so tests
// can feed requests without sockets.
func (r *Registrar) decide(req *sip.Request) *sip.Response {
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Bad Request", nil)
	}
	now := r.now()
	authz := req.GetHeaders("Authorization")
	if len(authz) == 0 {
		return r.challenge(req, src.Addr(), now, false)
	}
	creds, err := strongest(authz)
	if err != nil {
		r.count(func(s *Stats) { s.Refused++ })
		return sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Malformed Authorization", nil)
	}
	line, pass, known := r.accounts(creds.Username)
	uri := req.Recipient.String()
	if sameURI(creds.URI, req.Recipient) {
		uri = creds.URI
	}
	// The account was looked up for creds.Username, the only user Check
	// asks about.
	result := r.auth.Check(sipauth.Request{Method: string(req.Method), URI: uri, Src: src.Addr()}, creds,
		func(string) (string, bool) { return pass, known }, now)
	switch result {
	case sipauth.Challenge:
		return r.challenge(req, src.Addr(), now, false)
	case sipauth.Stale:
		return r.challenge(req, src.Addr(), now, true)
	case sipauth.Wrong:
		r.count(func(s *Stats) { s.Refused++ })
		// The user name is the phone's line number and safe to log; the
		// password and digest never are.
		r.log.Info("registrar: wrong password", "user", safeUser(creds.Username), "src", src)
		return sip.NewResponseFromRequest(req, sip.StatusForbidden, "Forbidden", nil)
	case sipauth.Limited:
		r.count(func(s *Stats) { s.Limited++ })
		res := sip.NewResponseFromRequest(req, sip.StatusForbidden, "Too Many Failed Attempts", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", "60"))
		return res
	}
	// RFC 3261 §10.3 step 5: the To user is the address being
	// registered; a line may only register itself.
	if to := req.To(); to == nil || to.Address.User != creds.Username {
		r.count(func(s *Stats) { s.Refused++ })
		return sip.NewResponseFromRequest(req, sip.StatusForbidden, "Forbidden: register your own line", nil)
	}
	digest := "MD5"
	if strings.EqualFold(creds.Algorithm, "SHA-256") {
		digest = "SHA-256"
	}
	return r.bind(req, line, src, digest, now)
}

// strongest picks the answer to check when a phone answered several
// challenges: RFC 3261 §22.3 lets it send one Authorization per
// WWW-Authenticate, and libre 3.12 and later (baresip) does, SHA-256 and
// MD5 both. The SHA-256 one is checked whatever the order, so a client
// that can do SHA-256 is never judged on its MD5 answer.
func strongest(hs []sip.Header) (sipauth.Credentials, error) {
	var first sipauth.Credentials
	var firstErr error
	found := false
	for _, h := range hs {
		c, err := sipauth.ParseAuthorization(h.Value())
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if strings.EqualFold(c.Algorithm, "SHA-256") {
			return c, nil
		}
		if !found {
			first, found = c, true
		}
	}
	if !found {
		return sipauth.Credentials{}, firstErr
	}
	return first, nil
}

func (r *Registrar) challenge(req *sip.Request, src netip.Addr, now time.Time, stale bool) *sip.Response {
	r.count(func(s *Stats) { s.Challenged++ })
	res := sip.NewResponseFromRequest(req, sip.StatusUnauthorized, "Unauthorized", nil)
	ua := ""
	if h := req.GetHeader("User-Agent"); h != nil {
		ua = h.Value()
	}
	for _, c := range r.auth.Challenges(src, ua, now, stale) {
		res.AppendHeader(sip.NewHeader("WWW-Authenticate", c))
	}
	return res
}

// bind applies the REGISTER's Contact (RFC 3261 §10.3 steps 6-8): none is
// a query, `*` with Expires 0 removes, otherwise the line's one binding is
// replaced; a line is one phone.
func (r *Registrar) bind(req *sip.Request, line int, src netip.AddrPort, digest string, now time.Time) *sip.Response {
	expires := DefaultExpires
	if h := req.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n >= 0 {
			expires = n
		}
	}
	contact := req.Contact()
	if contact != nil {
		if v, ok := contact.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				expires = n
			}
		}
	}
	if contact != nil && expires > 0 && expires < MinExpires {
		res := sip.NewResponseFromRequest(req, sip.StatusIntervalToBrief, "Interval Too Brief", nil)
		res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(MinExpires)))
		return res
	}
	expires = min(expires, MaxExpires)
	r.mu.Lock()
	switch {
	case contact == nil:
	case expires == 0:
		if _, had := r.bindings[line]; had {
			r.stats.Unregistered++
		}
		delete(r.bindings, line)
	default:
		ua := ""
		if h := req.GetHeader("User-Agent"); h != nil {
			ua = h.Value()
		}
		r.bindings[line] = Binding{
			Line: line, Contact: contact.Address.String(), Source: src,
			UserAgent: ua, Digest: digest, Expires: now.Add(time.Duration(expires) * time.Second),
		}
		r.stats.Registered++
	}
	b, bound := r.bindings[line]
	r.mu.Unlock()

	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	if bound && now.Before(b.Expires) {
		left := int(b.Expires.Sub(now).Round(time.Second) / time.Second)
		res.AppendHeader(sip.NewHeader("Contact", "<"+b.Contact+">;expires="+strconv.Itoa(left)))
	}
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format(time.RFC1123)))
	if contact != nil && expires > 0 {
		r.log.Info("registrar: registered", "line", line, "contact", b.Contact, "src", src, "digest", digest, "expires", expires)
	}
	return res
}

func (r *Registrar) count(f func(*Stats)) {
	r.mu.Lock()
	f(&r.stats)
	r.mu.Unlock()
}

// sameURI says whether the digest's uri names the Request-URI: phones
// copy the request line, but sipgo re-renders it, so compare parsed.
func sameURI(s string, u sip.Uri) bool {
	var p sip.Uri
	if err := sip.ParseUri(s, &p); err != nil {
		return false
	}
	port := func(x int) int {
		if x == 0 {
			return 5060
		}
		return x
	}
	return strings.EqualFold(p.Scheme, u.Scheme) && p.User == u.User &&
		strings.EqualFold(p.Host, u.Host) && port(p.Port) == port(u.Port)
}

// safeUser bounds what a hostile user name puts in the log (slog quotes
// it, so it cannot forge lines).
func safeUser(s string) string {
	if len(s) > 32 {
		s = s[:32]
	}
	return s
}
