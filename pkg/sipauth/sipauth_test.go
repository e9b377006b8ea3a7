package sipauth

import (
	"crypto/md5"
	"crypto/sha256"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
)

// The digest computation against the RFCs' own examples, so the registrar
// agrees with phones and not only with itself.
func TestResponseVectors(t *testing.T) {
	rfc7616 := Credentials{
		Username: "Mufasa", Realm: "http-auth@example.org",
		Nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", URI: "/dir/index.html",
		CNonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", NC: "00000001", QOP: "auth",
	}
	rfc2617 := Credentials{
		Username: "Mufasa", Realm: "testrealm@host.com",
		Nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093", URI: "/dir/index.html",
		CNonce: "0a4f113b", NC: "00000001", QOP: "auth",
	}
	for _, tc := range []struct {
		name   string
		sha    bool
		c      Credentials
		secret string
		want   string
	}{
		{"RFC 7616 SHA-256", true, rfc7616, "Circle of Life", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
		{"RFC 7616 MD5", false, rfc7616, "Circle of Life", "8ca523f5e9506fed4657c9700eebdbec"},
		{"RFC 2617 MD5", false, rfc2617, "Circle Of Life", "6629fae49393a05397450978507c4ef1"},
	} {
		h := md5.New
		if tc.sha {
			h = sha256.New
		}
		if got := response(h, tc.c, "GET", tc.secret); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

var (
	phone  = netip.MustParseAddr("10.0.1.1")
	other  = netip.MustParseAddr("10.0.2.1")
	t0     = time.Unix(1_800_000_000, 0)
	lines  = map[string]string{"1": "s3cret-one", "2": "s3cret-two"}
	lookup = func(u string) (string, bool) { p, ok := lines[u]; return p, ok }
)

// answer is what a phone sends: the challenge answered by an independent
// digest implementation (github.com/icholy/digest, which sipgo's client
// uses), parsed back through ParseAuthorization.
func answer(t *testing.T, chal, user, pass, uri string, count int) Credentials {
	t.Helper()
	ch, err := digest.ParseChallenge(chal)
	if err != nil {
		t.Fatalf("parse challenge %q: %v", chal, err)
	}
	cr, err := digest.Digest(ch, digest.Options{Method: "REGISTER", URI: uri, Username: user, Password: pass, Count: count})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseAuthorization(cr.String())
	if err != nil {
		t.Fatalf("ParseAuthorization(%q): %v", cr.String(), err)
	}
	return c
}

func TestCheck(t *testing.T) {
	const uri = "sip:10.0.1.2"
	req := Request{Method: "REGISTER", URI: uri, Src: phone}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, a *Authenticator) Result
		want Result
	}{
		{"SHA-256 right", func(t *testing.T, a *Authenticator) Result {
			ch := a.Challenges(phone, "", t0, false)[0]
			return a.Check(req, answer(t, ch, "1", lines["1"], uri, 1), lookup, t0.Add(time.Second))
		}, OK},
		{"MD5 right", func(t *testing.T, a *Authenticator) Result {
			ch := a.Challenges(phone, "", t0, false)[1]
			return a.Check(req, answer(t, ch, "2", lines["2"], uri, 1), lookup, t0)
		}, OK},
		{"wrong password", func(t *testing.T, a *Authenticator) Result {
			ch := a.Challenges(phone, "", t0, false)[0]
			return a.Check(req, answer(t, ch, "1", "guess", uri, 1), lookup, t0)
		}, Wrong},
		{"another line's password", func(t *testing.T, a *Authenticator) Result {
			ch := a.Challenges(phone, "", t0, false)[0]
			return a.Check(req, answer(t, ch, "1", lines["2"], uri, 1), lookup, t0)
		}, Wrong},
		{"unknown user", func(t *testing.T, a *Authenticator) Result {
			ch := a.Challenges(phone, "", t0, false)[0]
			return a.Check(req, answer(t, ch, "9", "x", uri, 1), lookup, t0)
		}, Wrong},
		{"answer moved to another request URI", func(t *testing.T, a *Authenticator) Result {
			ch := a.Challenges(phone, "", t0, false)[0]
			return a.Check(req, answer(t, ch, "1", lines["1"], "sip:10.0.2.2", 1), lookup, t0)
		}, Wrong},
		{"nonce made for another address", func(t *testing.T, a *Authenticator) Result {
			ch := a.Challenges(other, "", t0, false)[0]
			return a.Check(req, answer(t, ch, "1", lines["1"], uri, 1), lookup, t0)
		}, Challenge},
		{"nonce from before a restart", func(t *testing.T, a *Authenticator) Result {
			ch := New(Config{Realm: "peerline"}).Challenges(phone, "", t0, false)[0]
			return a.Check(req, answer(t, ch, "1", lines["1"], uri, 1), lookup, t0)
		}, Challenge},
		{"old nonce, right password", func(t *testing.T, a *Authenticator) Result {
			ch := a.Challenges(phone, "", t0, false)[0]
			return a.Check(req, answer(t, ch, "1", lines["1"], uri, 1), lookup, t0.Add(6*time.Minute))
		}, Stale},
		{"replayed answer", func(t *testing.T, a *Authenticator) Result {
			c := answer(t, a.Challenges(phone, "", t0, false)[0], "1", lines["1"], uri, 1)
			if r := a.Check(req, c, lookup, t0); r != OK {
				t.Fatalf("first use: %v", r)
			}
			return a.Check(req, c, lookup, t0.Add(time.Second))
		}, Stale},
		{"nonce reused with a higher count", func(t *testing.T, a *Authenticator) Result {
			ch := a.Challenges(phone, "", t0, false)[0]
			if r := a.Check(req, answer(t, ch, "1", lines["1"], uri, 1), lookup, t0); r != OK {
				t.Fatalf("first use: %v", r)
			}
			return a.Check(req, answer(t, ch, "1", lines["1"], uri, 2), lookup, t0.Add(time.Minute))
		}, OK},
		{"realm of someone else", func(t *testing.T, a *Authenticator) Result {
			ch := strings.Replace(a.Challenges(phone, "", t0, false)[0], `realm="peerline"`, `realm="evil"`, 1)
			return a.Check(req, answer(t, ch, "1", lines["1"], uri, 1), lookup, t0)
		}, Challenge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := New(Config{Realm: "peerline"})
			if got := tc.run(t, a); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// Without qop (RFC 2069, still sent by old phones) a nonce answers once:
// otherwise anyone who saw the REGISTER could replay it.
func TestNoQOPOnce(t *testing.T) {
	a := New(Config{Realm: "peerline", Offer: MD5})
	ch := a.Challenges(phone, "", t0, false)[0]
	c := answer(t, ch, "1", lines["1"], "sip:10.0.1.2", 1)
	c.QOP, c.NC, c.CNonce = "", "", ""
	c.Response = response(md5.New, c, "REGISTER", lines["1"])
	req := Request{Method: "REGISTER", URI: "sip:10.0.1.2", Src: phone}
	if r := a.Check(req, c, lookup, t0); r != OK {
		t.Fatalf("first: %v", r)
	}
	if r := a.Check(req, c, lookup, t0); r != Stale {
		t.Fatalf("second: %v, want stale", r)
	}
}

// Guessing is slowed per source: after the burst a source is refused
// without being checked, even with the right password, until tokens come
// back; another source is not affected.
func TestGuessingSlowed(t *testing.T) {
	a := New(Config{Realm: "peerline", FailureBurst: 3, FailureRate: 1.0 / 20})
	req := Request{Method: "REGISTER", URI: "sip:10.0.1.2", Src: phone}
	try := func(pass string, src netip.Addr, at time.Time) Result {
		r := req
		r.Src = src
		return a.Check(r, answer(t, a.Challenges(src, "", at, false)[0], "1", pass, r.URI, 1), lookup, at)
	}
	var got []Result
	for i := range 5 {
		got = append(got, try("guess", phone, t0.Add(time.Duration(i)*time.Second)))
	}
	want := []Result{Wrong, Wrong, Wrong, Limited, Limited}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("attempts: %v, want %v", got, want)
		}
	}
	if r := try(lines["1"], phone, t0.Add(5*time.Second)); r != Limited {
		t.Errorf("right password while limited: %v, want limited", r)
	}
	if r := try(lines["1"], other, t0.Add(5*time.Second)); r != OK {
		t.Errorf("another source: %v, want ok", r)
	}
	if r := try(lines["1"], phone, t0.Add(30*time.Second)); r != OK {
		t.Errorf("after a token came back: %v, want ok", r)
	}
}

// The tables stay bounded whatever a flood of sources or answers does.
func TestTablesBounded(t *testing.T) {
	a := New(Config{Realm: "peerline", MaxSources: 16, MaxNonces: 8})
	for i := range 1000 {
		src := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		r := Request{Method: "REGISTER", URI: "sip:10.0.1.2", Src: src}
		a.Check(r, answer(t, a.Challenges(src, "", t0, false)[0], "1", "guess", r.URI, 1), lookup, t0)
		a.Check(r, answer(t, a.Challenges(src, "", t0, false)[0], "1", lines["1"], r.URI, 1), lookup, t0)
	}
	if len(a.failures) > 16 || len(a.used) > 8 {
		t.Errorf("tables grew to %d sources, %d nonces", len(a.failures), len(a.used))
	}
}

func TestChallengesOffer(t *testing.T) {
	for _, tc := range []struct {
		offer Algorithms
		want  []string
	}{
		{Both, []string{"algorithm=SHA-256", "algorithm=MD5"}},
		{MD5, []string{"algorithm=MD5"}},
		{SHA256, []string{"algorithm=SHA-256"}},
	} {
		got := New(Config{Realm: "r", Offer: tc.offer}).Challenges(phone, "", t0, true)
		if len(got) != len(tc.want) {
			t.Fatalf("offer %v: %q", tc.offer, got)
		}
		seen := map[string]bool{}
		for i, c := range got {
			if !strings.Contains(c, tc.want[i]) || !strings.Contains(c, "stale=true") || !strings.Contains(c, `qop="auth"`) {
				t.Errorf("offer %v: challenge %q", tc.offer, c)
			}
			n := c[strings.Index(c, "nonce="):]
			if seen[n] {
				t.Errorf("nonce repeated across challenges: %q", got)
			}
			seen[n] = true
		}
	}
}

// A phone that gives up on a challenge naming SHA-256 comes back without
// credentials; from then on it is offered MD5 alone. A phone that answered
// SHA-256 keeps it.
func TestOfferFallsBackToMD5(t *testing.T) {
	a := New(Config{Realm: "peerline"})
	first := func(src netip.Addr, at time.Time) string {
		c := a.Challenges(src, "", at, false)[0]
		return c[strings.Index(c, "algorithm="):strings.Index(c, ", qop")]
	}
	if got := first(phone, t0); got != "algorithm=SHA-256" {
		t.Fatalf("first challenge offers %s first", got)
	}
	if got := a.Challenges(phone, "", t0.Add(30*time.Second), false); len(got) != 1 || !strings.Contains(got[0], "algorithm=MD5") {
		t.Errorf("after an unanswered SHA-256 challenge: %q", got)
	}
	if got := first(phone, t0.Add(time.Hour)); got != "algorithm=MD5" {
		t.Errorf("an hour later: %s first, want MD5 still", got)
	}

	req := Request{Method: "REGISTER", URI: "sip:10.0.2.2", Src: other}
	ch := a.Challenges(other, "", t0, false)[0]
	if r := a.Check(req, answer(t, ch, "2", lines["2"], req.URI, 1), lookup, t0); r != OK {
		t.Fatalf("SHA-256 answer: %v", r)
	}
	if got := first(other, t0.Add(10*time.Minute)); got != "algorithm=SHA-256" {
		t.Errorf("a phone that answered SHA-256 is offered %s first", got)
	}
}

// A client known to fail on any challenge naming SHA-256 is offered MD5
// alone from its first REGISTER; every other client gets SHA-256 first.
func TestKnownMD5OnlyAgents(t *testing.T) {
	for _, tc := range []struct {
		ua   string
		want []string // the algorithms offered, in order
	}{
		{"baresip v1.0.0 (x86_64/linux)", []string{"MD5"}},
		{"baresip v2.9.0 (aarch64/linux)", []string{"MD5"}},
		{"baresip v3.11.0 (x86_64/Linux)", []string{"MD5"}},
		{"baresip v3.12.0 (x86_64/Linux)", []string{"SHA-256", "MD5"}},
		{"baresip v4.0.0 (x86_64/Linux)", []string{"SHA-256", "MD5"}},
		{"baresip vX", []string{"SHA-256", "MD5"}},
		{"Grandstream GXP1610 1.0.7.13", []string{"SHA-256", "MD5"}},
		{"Yealink SIP-T19P_E2 53.84.0.125", []string{"SHA-256", "MD5"}},
		{"", []string{"SHA-256", "MD5"}},
	} {
		// A fresh source each time, so nothing learnt interferes.
		a := New(Config{Realm: "peerline"})
		var got []string
		for _, c := range a.Challenges(phone, tc.ua, t0, false) {
			got = append(got, c[strings.Index(c, "algorithm=")+len("algorithm="):strings.Index(c, ", qop")])
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("User-Agent %q: offered %v, want %v", tc.ua, got, tc.want)
		}
	}
	// The config's choice stands: SHA-256 alone stays SHA-256 alone.
	a := New(Config{Realm: "peerline", Offer: SHA256})
	if got := a.Challenges(phone, "baresip v1.0.0 (x86_64/linux)", t0, false); len(got) != 1 || !strings.Contains(got[0], "algorithm=SHA-256") {
		t.Errorf("Offer SHA256 to baresip 1.0: %q", got)
	}
}
