package registrar

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/peerline/peerline/pkg/sipauth"
)

var accounts = Accounts(func(user string) (int, string, bool) {
	switch user {
	case "1":
		return 1, "pw-line-one", true
	case "2":
		return 2, "pw-line-two", true
	}
	return 0, "", false
})

// start runs a registrar on a loopback socket, as the Pi runs one on each
// line's 10.0.s.2, and returns it with its address.
func start(t *testing.T) (*Registrar, string) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := New(sipauth.Config{Realm: "alice"}, accounts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, r, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return r, conn.LocalAddr().String()
}

// phone is a sipgo client standing in for a desk phone on line user.
func register(t *testing.T, addr, user, pass string, expires int) *sip.Response {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("test-phone"))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	cl, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: host, Port: p})
	req.AppendHeader(sip.NewHeader("To", "<sip:"+user+"@"+host+">"))
	req.AppendHeader(sip.NewHeader("From", "<sip:"+user+"@"+host+">;tag=t"+user))
	req.AppendHeader(sip.NewHeader("Contact", "<sip:"+user+"@127.0.0.1:5062>"))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	req.AppendHeader(sip.NewHeader("User-Agent", "test-phone"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := cl.Do(ctx, req)
	if err != nil {
		t.Fatalf("REGISTER: %v", err)
	}
	if res.StatusCode != sip.StatusUnauthorized {
		return res
	}
	res, err = cl.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: pass})
	if err != nil {
		t.Fatalf("REGISTER with digest: %v", err)
	}
	return res
}

func TestRegisterOverUDP(t *testing.T) {
	r, addr := start(t)
	if res := register(t, addr, "1", "pw-line-one", 600); res.StatusCode != 200 {
		t.Fatalf("right password: %d %s", res.StatusCode, res.Reason)
	}
	b, ok := r.Lookup(1)
	if !ok || b.Contact != "sip:1@127.0.0.1:5062" || b.UserAgent != "test-phone" {
		t.Fatalf("binding after register: %+v %v", b, ok)
	}
	// sipgo's client answers the first challenge it can: SHA-256.
	if b.Digest != "SHA-256" {
		t.Errorf("sipgo's client registered with %q, want SHA-256 (offered first)", b.Digest)
	}
	if left := time.Until(b.Expires); left < 590*time.Second || left > 600*time.Second {
		t.Errorf("expires in %v, want 600 s", left)
	}
	if res := register(t, addr, "2", "pw-line-one", 600); res.StatusCode != 403 {
		t.Errorf("line 2 with line 1's password: %d, want 403", res.StatusCode)
	}
	if _, ok := r.Lookup(2); ok {
		t.Error("line 2 bound after a wrong password")
	}
	if res := register(t, addr, "1", "pw-line-one", 10); res.StatusCode != 423 || res.GetHeader("Min-Expires") == nil {
		t.Errorf("expires 10: %d, want 423 with Min-Expires", res.StatusCode)
	}
	if res := register(t, addr, "1", "pw-line-one", 0); res.StatusCode != 200 {
		t.Errorf("unregister: %d", res.StatusCode)
	}
	if _, ok := r.Lookup(1); ok {
		t.Error("line 1 still bound after Expires: 0")
	}
	st := r.Stats()
	if st.Registered != 1 || st.Unregistered != 1 || st.Refused != 1 {
		t.Errorf("stats %+v", st)
	}
}

// A phone may only register its own line, even with a right password.
func TestRegisterOtherLine(t *testing.T) {
	r, addr := start(t)
	ua, _ := sipgo.NewUA()
	defer ua.Close()
	cl, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: host, Port: p})
	req.AppendHeader(sip.NewHeader("To", "<sip:2@"+host+">"))
	req.AppendHeader(sip.NewHeader("From", "<sip:1@"+host+">;tag=x"))
	req.AppendHeader(sip.NewHeader("Contact", "<sip:evil@127.0.0.1:5099>"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := cl.Do(ctx, req)
	if err != nil || res.StatusCode != 401 {
		t.Fatalf("first: %v %v", res, err)
	}
	res, err = cl.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: "1", Password: "pw-line-one"})
	if err != nil || res.StatusCode != 403 {
		t.Fatalf("line 1 registering To line 2: %v %v, want 403", res, err)
	}
	if _, ok := r.Lookup(2); ok {
		t.Error("line 2 bound by line 1's phone")
	}
}

// serve runs a bare sipgo server that hands REGISTERs to r, as
// pkg/sipservice does on the Pi.
func serve(ctx context.Context, r *Registrar, conn net.PacketConn) error {
	ua, err := sipgo.NewUA()
	if err != nil {
		return err
	}
	defer ua.Close()
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		return err
	}
	srv.OnRegister(r.Handle)
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	err = srv.ServeUDP(conn)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// A forgotten line's binding goes at once.
func TestUnbind(t *testing.T) {
	r, addr := start(t)
	if res := register(t, addr, "1", "pw-line-one", 600); res.StatusCode != 200 {
		t.Fatalf("register: %d %s", res.StatusCode, res.Reason)
	}
	r.Unbind(1)
	r.Unbind(2) // no binding: nothing counted
	if _, ok := r.Lookup(1); ok {
		t.Error("line 1 still bound after Unbind")
	}
	if s := r.Stats(); s.Unregistered != 1 {
		t.Errorf("unregistered %d, want 1", s.Unregistered)
	}
}

// newRegister is a REGISTER for line 1 from its phone, without sockets.
func newRegister(ua string, authz ...string) *sip.Request {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "10.0.1.2"})
	req.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK1"))
	req.AppendHeader(sip.NewHeader("To", "<sip:1@10.0.1.2>"))
	req.AppendHeader(sip.NewHeader("From", "<sip:1@10.0.1.2>;tag=a"))
	req.AppendHeader(sip.NewHeader("Call-ID", "reg-1"))
	req.AppendHeader(sip.NewHeader("CSeq", "1 REGISTER"))
	req.AppendHeader(sip.NewHeader("Contact", "<sip:1@10.0.1.1:5060>"))
	req.AppendHeader(sip.NewHeader("User-Agent", ua))
	for _, a := range authz {
		req.AppendHeader(sip.NewHeader("Authorization", a))
	}
	req.SetSource("10.0.1.1:5060")
	return req
}

// answerAll answers each challenge of a 401 with pass, as a phone that
// sends one Authorization per WWW-Authenticate (libre 3.12+) does; the
// answers come from github.com/icholy/digest, not from our own code.
func answerAll(t *testing.T, res *sip.Response, pass map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		ch, err := digest.ParseChallenge(h.Value())
		if err != nil {
			t.Fatal(err)
		}
		cr, err := digest.Digest(ch, digest.Options{Method: "REGISTER", URI: "sip:10.0.1.2", Username: "1", Password: pass[ch.Algorithm], Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		out[ch.Algorithm] = cr.String()
	}
	return out
}

// A phone that answers both challenges is judged on its SHA-256 answer,
// whatever order it sends them in.
func TestSHA256AnswerChecked(t *testing.T) {
	r := New(sipauth.Config{Realm: "alice"}, accounts, slog.New(slog.DiscardHandler))
	const right, wrong = "pw-line-one", "guess"
	for _, tc := range []struct {
		name     string
		sha, md5 string
		md5First bool
		wantCode int
	}{
		{"both right, MD5 first", right, right, true, 200},
		{"SHA-256 right, MD5 wrong, MD5 first", right, wrong, true, 200},
		{"SHA-256 wrong, MD5 right, MD5 first", wrong, right, true, 403},
		{"SHA-256 wrong, MD5 right, SHA-256 first", wrong, right, false, 403},
	} {
		res := r.decide(newRegister("test-phone"))
		if res.StatusCode != 401 || len(res.GetHeaders("WWW-Authenticate")) != 2 {
			t.Fatalf("%s: first answer %d with %d challenges, want 401 with SHA-256 and MD5", tc.name, res.StatusCode, len(res.GetHeaders("WWW-Authenticate")))
		}
		ans := answerAll(t, res, map[string]string{"SHA-256": tc.sha, "MD5": tc.md5})
		order := []string{ans["SHA-256"], ans["MD5"]}
		if tc.md5First {
			order = []string{ans["MD5"], ans["SHA-256"]}
		}
		if got := r.decide(newRegister("test-phone", order...)); got.StatusCode != tc.wantCode {
			t.Errorf("%s: %d %s, want %d", tc.name, got.StatusCode, got.Reason, tc.wantCode)
		}
		if b, ok := r.Lookup(1); tc.wantCode == 200 && (!ok || b.Digest != "SHA-256") {
			t.Errorf("%s: binding %+v, want one made with SHA-256", tc.name, b)
		}
	}
}

// baresip 1.0 fails a 401 that names SHA-256 anywhere and retries only
// 30-60 s later: it is offered MD5 alone from its first REGISTER.
func TestBaresipOfferedMD5(t *testing.T) {
	r := New(sipauth.Config{Realm: "alice"}, accounts, slog.New(slog.DiscardHandler))
	res := r.decide(newRegister("baresip v1.0.0 (x86_64/linux)"))
	chs := res.GetHeaders("WWW-Authenticate")
	if res.StatusCode != 401 || len(chs) != 1 || !strings.Contains(chs[0].Value(), "algorithm=MD5") {
		t.Fatalf("baresip 1.0's first REGISTER: %d %v, want 401 with MD5 alone", res.StatusCode, chs)
	}
	ans := answerAll(t, res, map[string]string{"MD5": "pw-line-one"})
	if got := r.decide(newRegister("baresip v1.0.0 (x86_64/linux)", ans["MD5"])); got.StatusCode != 200 {
		t.Errorf("baresip's MD5 answer: %d %s", got.StatusCode, got.Reason)
	}
	if b, _ := r.Lookup(1); b.Digest != "MD5" {
		t.Errorf("baresip's binding says digest %q, want MD5", b.Digest)
	}
}
