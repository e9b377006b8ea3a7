package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/peerline/peerline/pkg/adminpass"
	"github.com/peerline/peerline/pkg/tokenbucket"
)

// Session and limiter sizes: an appliance has one owner and a few
// browsers; these bound memory whatever a stranger sends.
const (
	sessionCookie = "peerline_session"
	// preCookie carries the CSRF token of the forms shown before a login
	// (login, first use): double-submit, compared with the form's field.
	preCookie   = "peerline_csrf"
	maxSessions = 16
	idleTimeout = 30 * time.Minute
	maxLifetime = 12 * time.Hour
	// Per source: 5 attempts, then one every 12 s; globally: 10, then one
	// a second. A guesser on the home network gets 300 tries an hour, and
	// many guessers together 3600.
	perSourceRate  = 1.0 / 12
	perSourceBurst = 5
	globalRate     = 1
	globalBurst    = 10
	maxSources     = 1024
)

// session is one logged-in browser.
type session struct {
	csrf    string
	created time.Time
	seen    time.Time
	from    netip.Addr
	// flash is a message for the next page (guarded by auth.mu).
	flash string
}

// auth holds the sessions and the login limiter. mu guards everything.
type auth struct {
	mu       sync.Mutex
	sessions map[string]*session
	sources  map[netip.Addr]*tokenbucket.Bucket
	global   tokenbucket.Bucket
	// hashing runs one argon2id at a time, bounding memory.
	hashing sync.Mutex
}

func newAuth(now time.Time) *auth {
	return &auth{sessions: map[string]*session{}, sources: map[netip.Addr]*tokenbucket.Bucket{}, global: tokenbucket.Full(globalBurst, now)}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("console: no randomness: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// allowAttempt takes a token for a login or first-use attempt from addr.
func (a *auth) allowAttempt(now time.Time, addr netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.sources[addr]
	if b == nil {
		if len(a.sources) >= maxSources {
			// Drop the buckets that are full again: they carry no state.
			for k, v := range a.sources {
				if v.Take(now, perSourceRate, perSourceBurst, 0) && v.Tokens >= perSourceBurst {
					delete(a.sources, k)
				}
			}
			if len(a.sources) >= maxSources {
				return false
			}
		}
		bb := tokenbucket.Full(perSourceBurst, now)
		b = &bb
		a.sources[addr] = b
	}
	if !b.Take(now, perSourceRate, perSourceBurst, 1) {
		return false
	}
	return a.global.Take(now, globalRate, globalBurst, 1)
}

// newSession starts a session for a browser at addr and returns its token.
func (a *auth) newSession(now time.Time, addr netip.Addr) (string, *session) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked(now)
	if len(a.sessions) >= maxSessions {
		var oldest string
		for k, s := range a.sessions {
			if oldest == "" || s.seen.Before(a.sessions[oldest].seen) {
				oldest = k
			}
		}
		delete(a.sessions, oldest)
	}
	tok := randomToken()
	s := &session{csrf: randomToken(), created: now, seen: now, from: addr}
	a.sessions[tok] = s
	return tok, s
}

func (a *auth) expireLocked(now time.Time) {
	for k, s := range a.sessions {
		if now.Sub(s.seen) > idleTimeout || now.Sub(s.created) > maxLifetime {
			delete(a.sessions, k)
		}
	}
}

// lookup returns the session of r's cookie, refreshing its idle timer.
func (a *auth) lookup(now time.Time, r *http.Request) (string, *session) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || len(c.Value) > 64 {
		return "", nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked(now)
	s := a.sessions[c.Value]
	if s == nil {
		return "", nil
	}
	s.seen = now
	return c.Value, s
}

func (a *auth) endSession(tok string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.sessions, tok)
}

// endAll logs every browser out: after a password change.
func (a *auth) endAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.sessions)
}

// verify checks pw against the stored hash, one hash at a time.
func (a *auth) verify(path, pw string) (bool, error) {
	enc, err := adminpass.Load(path)
	if err != nil {
		return false, err
	}
	a.hashing.Lock()
	defer a.hashing.Unlock()
	return adminpass.Verify(enc, pw)
}

// errPasswordSet means the first-use page came too late: a password exists.
var errPasswordSet = errors.New("an admin password is already set")

// setFirst stores the first password unless one exists. The check and the
// write are under one lock, so two browsers racing on the first-use page
// cannot both win.
func (a *auth) setFirst(path, pw string, p adminpass.Params) error {
	a.hashing.Lock()
	defer a.hashing.Unlock()
	if _, err := adminpass.Load(path); !errors.Is(err, adminpass.ErrNotSet) {
		if err == nil {
			return errPasswordSet
		}
		return err
	}
	return adminpass.Set(path, pw, p)
}

// change replaces the password; the caller has checked the old one.
func (a *auth) change(path, pw string, p adminpass.Params) error {
	a.hashing.Lock()
	defer a.hashing.Unlock()
	return adminpass.Set(path, pw, p)
}

func tokensEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
