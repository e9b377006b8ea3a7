// Package sipauth decides SIP digest authentication for the Pi's
// registrar: it writes challenges with fresh nonces, checks a phone's
// answer (SHA-256 per RFC 8760, MD5 for phones that only have it), refuses
// replayed answers, tells a phone whose nonce merely aged to retry without
// asking its user (stale=true), and slows password guessing per source
// address.
//
// It holds no sockets and reads no clock: callers pass the time, so the
// decisions are tested with a fake one. Passwords never leave the lookup
// function the caller passes and are never logged.
package sipauth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/peerline/peerline/pkg/tokenbucket"
)

// Result is what the registrar does with a request.
type Result int

const (
	// OK: the answer is right and fresh; serve the request.
	OK Result = iota
	// Challenge: no usable answer (none, unknown or foreign nonce, an
	// algorithm we do not offer); reply 401 with Challenge.
	Challenge
	// Stale: the password was right but the nonce is too old or was
	// already used; reply 401 with a stale=true challenge so the phone
	// retries on its own.
	Stale
	// Wrong: a wrong user, password or digest; reply 403 (counted
	// against the source).
	Wrong
	// Limited: the source has failed too often; reply 403 with
	// Retry-After without checking anything.
	Limited
)

func (r Result) String() string {
	switch r {
	case OK:
		return "ok"
	case Challenge:
		return "challenge"
	case Stale:
		return "stale"
	case Wrong:
		return "wrong"
	case Limited:
		return "limited"
	}
	return "result(" + strconv.Itoa(int(r)) + ")"
}

// Algorithms a challenge offers, in order of preference.
type Algorithms uint8

const (
	SHA256 Algorithms = 1 << iota
	MD5
	Both = SHA256 | MD5
)

// Config tunes an Authenticator; zero values take the defaults.
type Config struct {
	Realm string
	// Offer is which algorithms challenges name (default Both, SHA-256
	// first: RFC 7616 §3.7 lets a client pick the first it supports).
	Offer Algorithms
	// NonceLifetime is how long a nonce is accepted (default 5 min).
	// Older answers get a stale challenge.
	NonceLifetime time.Duration
	// FailureBurst failures are allowed at once from one address, then
	// FailureRate per second (defaults 6 and 1/20 s): a phone with a
	// mistyped password keeps retrying slowly, a guesser gets about three
	// guesses a minute.
	FailureBurst float64
	FailureRate  float64
	// MaxSources and MaxNonces bound the tables (defaults 1024 and 4096).
	MaxSources int
	MaxNonces  int
}

// Authenticator checks digest answers. Safe for concurrent use: sipgo
// calls handlers from many goroutines, and the tables are small enough
// that one short-held lock is the simplest owner.
type Authenticator struct {
	cfg Config
	key [32]byte

	mu       sync.Mutex
	failures map[netip.Addr]*tokenbucket.Bucket
	// offers remembers, per source, whether it answered SHA-256 and
	// whether it came back unable to: some phones (libre-based ones such
	// as baresip 1.0 among them) give up on a 401 that names an algorithm
	// they lack, even next to MD5, so such a source is offered MD5 alone
	// from then on.
	offers map[netip.Addr]*offer
	// used maps a nonce that has been answered to the highest nonce-count
	// seen, so a replayed answer is refused.
	used map[string]nonceUse
}

type offer struct {
	challenged time.Time // last challenge naming SHA-256 first
	answered   bool      // answered a challenge at least once
	md5First   bool
}

type nonceUse struct {
	nc     uint64
	issued time.Time
}

// New returns an Authenticator with a random nonce key: nonces from an
// earlier run are refused after a restart, and phones answer the fresh
// challenge without asking their user.
func New(cfg Config) *Authenticator {
	if cfg.Offer == 0 {
		cfg.Offer = Both
	}
	if cfg.NonceLifetime == 0 {
		cfg.NonceLifetime = 5 * time.Minute
	}
	if cfg.FailureBurst == 0 {
		cfg.FailureBurst = 6
	}
	if cfg.FailureRate == 0 {
		cfg.FailureRate = 1.0 / 20
	}
	if cfg.MaxSources == 0 {
		cfg.MaxSources = 1024
	}
	if cfg.MaxNonces == 0 {
		cfg.MaxNonces = 4096
	}
	a := &Authenticator{
		cfg:      cfg,
		failures: make(map[netip.Addr]*tokenbucket.Bucket),
		offers:   make(map[netip.Addr]*offer),
		used:     make(map[string]nonceUse),
	}
	if _, err := rand.Read(a.key[:]); err != nil {
		panic("sipauth: no randomness: " + err.Error())
	}
	return a
}

// Challenges returns the WWW-Authenticate values for a 401 to src, one per
// offered algorithm, each with its own fresh nonce. userAgent is the
// request's User-Agent header ("" if none): a client known to fail on any
// challenge naming SHA-256 is offered MD5 alone (md5OnlyAgent).
func (a *Authenticator) Challenges(src netip.Addr, userAgent string, now time.Time, stale bool) []string {
	order := []struct {
		bit  Algorithms
		name string
	}{{SHA256, "SHA-256"}, {MD5, "MD5"}}
	if a.cfg.Offer == Both && (md5OnlyAgent(userAgent) || a.md5Only(src, now)) {
		order = order[1:]
	}
	var out []string
	for _, alg := range order {
		if a.cfg.Offer&alg.bit == 0 {
			continue
		}
		var b strings.Builder
		b.WriteString(`Digest realm="`)
		b.WriteString(a.cfg.Realm)
		b.WriteString(`", nonce="`)
		b.WriteString(a.nonce(src, now))
		b.WriteString(`", algorithm=`)
		b.WriteString(alg.name)
		b.WriteString(`, qop="auth"`)
		if stale {
			b.WriteString(`, stale=true`)
		}
		out = append(out, b.String())
	}
	return out
}

// md5OnlyAgent says whether userAgent names a client that cannot answer
// SHA-256 and, worse, fails the whole 401 when any of its challenges names
// it, even with MD5 next to it, whatever the order. Such a client reports
// an error and retries only after its own back-off; for baresip 1.0 that
// is 30 to 60 s (libre's sipreg waits failwait(1): 60 s times 0.5 to 1),
// so learning it from the retry (md5Only) leaves a new phone unregistered
// for up to a minute. Offering MD5 alone to a client that has nothing
// else takes nothing from it, and every other client still gets SHA-256
// first. A client lying in its User-Agent only chooses MD5 for itself,
// which it could do anyway by answering the MD5 challenge.
//
// Known so far:
//   - baresip before 3.12: libre's sip_auth_authenticate stops at the
//     first WWW-Authenticate whose algorithm is not MD5 and returns ENOSYS
//     ("Function not implemented"); libre 3.12 (May 2024) added SHA-256.
//     Its User-Agent is "baresip v1.0.0 (x86_64/linux)".
func md5OnlyAgent(ua string) bool {
	rest, ok := strings.CutPrefix(ua, "baresip v")
	if !ok {
		return false
	}
	major, rest, _ := strings.Cut(rest, ".")
	minor, _, _ := strings.Cut(rest, ".")
	maj, err1 := strconv.Atoi(major)
	mnr, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return false // not a version we know: offer both, and learn
	}
	return maj < 3 || (maj == 3 && mnr < 12)
}

// md5Only decides what a challenge to src offers and notes it. A source
// that was challenged with SHA-256 first, never answered, and asks again
// without credentials within a retry's time could not use SHA-256.
func (a *Authenticator) md5Only(src netip.Addr, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	o := a.offers[src]
	if o == nil {
		if len(a.offers) >= a.cfg.MaxSources {
			for k := range a.offers {
				delete(a.offers, k)
				if len(a.offers) < a.cfg.MaxSources {
					break
				}
			}
		}
		o = &offer{}
		a.offers[src] = o
	}
	if !o.md5First && !o.answered && !o.challenged.IsZero() && now.Sub(o.challenged) < 10*time.Minute {
		o.md5First = true
	}
	if !o.md5First {
		o.challenged = now
	}
	return o.md5First
}

// nonce is a timestamp and a MAC over it and the source address: the
// registrar keeps no state for challenges it hands out (a flood of
// unauthenticated REGISTERs costs no memory), yet can tell its own fresh
// nonces from forged or foreign ones.
func (a *Authenticator) nonce(src netip.Addr, now time.Time) string {
	var raw [8 + 16 + 8]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.UnixNano()))
	// 8 random bytes make two challenges in the same nanosecond differ.
	_, _ = rand.Read(raw[24:])
	mac := a.mac(raw[:8], raw[24:], src)
	copy(raw[8:24], mac)
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

func (a *Authenticator) mac(ts, salt []byte, src netip.Addr) []byte {
	m := hmac.New(sha256.New, a.key[:])
	m.Write(ts)
	m.Write(salt)
	b := src.Unmap().As16()
	m.Write(b[:])
	return m.Sum(nil)[:16]
}

// issued returns when the nonce was made, and whether it is one of ours
// made for src.
func (a *Authenticator) issued(nonce string, src netip.Addr) (time.Time, bool) {
	var raw [32]byte
	if base64.RawURLEncoding.DecodedLen(len(nonce)) != len(raw) {
		return time.Time{}, false
	}
	if _, err := base64.RawURLEncoding.Decode(raw[:], []byte(nonce)); err != nil {
		return time.Time{}, false
	}
	if !hmac.Equal(raw[8:24], a.mac(raw[:8], raw[24:], src)) {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(raw[:8]))), true
}

// Request is what Check needs of the request being authenticated.
type Request struct {
	Method string
	// URI is the Request-URI as sent; the digest's uri must equal it, so
	// an answer cannot be moved to another request.
	URI string
	Src netip.Addr
}

// Check decides a request carrying creds. password returns the secret of
// a user, or false if there is no such user.
func (a *Authenticator) Check(req Request, creds Credentials, password func(user string) (string, bool), now time.Time) Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Only failures cost tokens; a source with none left is not checked
	// at all, so guessing stays slow however fast it asks.
	if b := a.failures[req.Src]; b != nil {
		b.Take(now, a.cfg.FailureRate, a.cfg.FailureBurst, 0) // refill only
		if b.Tokens < 1 {
			return Limited
		}
	}
	var h func() hash.Hash
	var bit Algorithms
	switch {
	case creds.Algorithm == "" || strings.EqualFold(creds.Algorithm, "MD5"):
		h, bit = md5.New, MD5
	case strings.EqualFold(creds.Algorithm, "SHA-256"):
		h, bit = sha256.New, SHA256
	default:
		return Challenge
	}
	if a.cfg.Offer&bit == 0 || creds.Realm != a.cfg.Realm {
		return Challenge
	}
	issued, ours := a.issued(creds.Nonce, req.Src)
	if !ours {
		// A nonce from before a restart, or for another address: ask
		// again. Not a failure: every phone meets this after a reboot.
		return Challenge
	}
	qop := creds.QOP != ""
	if qop && (!strings.EqualFold(creds.QOP, "auth") || creds.CNonce == "" || creds.NC == "") {
		return a.fail(req.Src, now)
	}
	secret, known := password(creds.Username)
	if !known {
		// Hash anyway so an unknown user costs the same time as a
		// wrong password.
		secret = "\x00"
	}
	want := response(h, creds, req.Method, secret)
	if !known || subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(creds.Response))) != 1 || creds.URI != req.URI {
		return a.fail(req.Src, now)
	}
	if now.Sub(issued) > a.cfg.NonceLifetime || issued.After(now.Add(time.Minute)) {
		return Stale
	}
	var nc uint64
	if qop {
		var err error
		if nc, err = strconv.ParseUint(creds.NC, 16, 64); err != nil || nc == 0 {
			return a.fail(req.Src, now)
		}
	}
	if u, seen := a.used[creds.Nonce]; seen && (!qop || nc <= u.nc) {
		// A replay, or a phone reusing a nonce without qop (which
		// would let anyone who saw the request replay it).
		return Stale
	}
	a.remember(creds.Nonce, nonceUse{nc: nc, issued: issued}, now)
	if o := a.offers[req.Src]; o != nil {
		o.answered = true
	}
	return OK
}

func (a *Authenticator) fail(src netip.Addr, now time.Time) Result {
	b := a.failures[src]
	if b == nil {
		if len(a.failures) >= a.cfg.MaxSources {
			a.evictSources(now)
		}
		nb := tokenbucket.Full(a.cfg.FailureBurst, now)
		b = &nb
		a.failures[src] = b
	}
	if !b.Take(now, a.cfg.FailureRate, a.cfg.FailureBurst, 1) {
		return Limited
	}
	return Wrong
}

// evictSources drops the sources whose bucket has refilled (they have
// nothing to remember); if none has, an arbitrary one, so a spoofing
// flood cannot grow the table.
func (a *Authenticator) evictSources(now time.Time) {
	for k, b := range a.failures {
		if b.Tokens+now.Sub(b.Last).Seconds()*a.cfg.FailureRate >= a.cfg.FailureBurst {
			delete(a.failures, k)
		}
	}
	for k := range a.failures {
		if len(a.failures) < a.cfg.MaxSources {
			break
		}
		delete(a.failures, k)
	}
}

func (a *Authenticator) remember(nonce string, u nonceUse, now time.Time) {
	if len(a.used) >= a.cfg.MaxNonces {
		for k, v := range a.used {
			if now.Sub(v.issued) > a.cfg.NonceLifetime {
				delete(a.used, k)
			}
		}
		// Still full of live nonces: forget the oldest. Only answers with
		// a right password get here, so this takes many phones.
		for len(a.used) >= a.cfg.MaxNonces {
			var oldest string
			var t time.Time
			for k, v := range a.used {
				if oldest == "" || v.issued.Before(t) {
					oldest, t = k, v.issued
				}
			}
			delete(a.used, oldest)
		}
	}
	a.used[strings.Clone(nonce)] = u
}

// response is the expected digest (RFC 7616 §3.4.1 with qop=auth, or RFC
// 2069's form without qop, which old phones still send).
func response(h func() hash.Hash, c Credentials, method, secret string) string {
	ha1 := hexHash(h, c.Username, ":", c.Realm, ":", secret)
	ha2 := hexHash(h, method, ":", c.URI)
	if c.QOP == "" {
		return hexHash(h, ha1, ":", c.Nonce, ":", ha2)
	}
	return hexHash(h, ha1, ":", c.Nonce, ":", c.NC, ":", c.CNonce, ":", strings.ToLower(c.QOP), ":", ha2)
}

func hexHash(h func() hash.Hash, parts ...string) string {
	d := h()
	for _, p := range parts {
		d.Write([]byte(p))
	}
	return hex.EncodeToString(d.Sum(nil))
}
