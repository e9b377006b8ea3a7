package registrar

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

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
