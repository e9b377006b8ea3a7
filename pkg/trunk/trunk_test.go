package trunk

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/privacy"
	"github.com/peerline/peerline/pkg/registrar"
	"github.com/peerline/peerline/pkg/rtprelay"
	"github.com/peerline/peerline/pkg/sipauth"
)

func listen(t *testing.T) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// provider runs pkg/registrar (real digest, an independent
// implementation of the server side) as a provider's registrar on
// loopback, with one account 4930123 / secret; calls, if set, adds the
// provider's call handling to the same socket before it serves.
func provider(t *testing.T, calls ...func(*sipLeg)) (addr string, reg *registrar.Registrar) {
	t.Helper()
	log := labtest.Logger(t)
	reg = registrar.New(sipauth.Config{Realm: "provider.test", Offer: sipauth.MD5}, func(user string) (int, string, bool) {
		if user == "4930123" {
			return 1, "secret", true
		}
		return 0, "", false
	}, log)
	conn := listen(t)
	leg, err := newLeg(conn, "provider", log)
	if err != nil {
		t.Fatal(err)
	}
	leg.srv.OnRegister(reg.Handle)
	for _, f := range calls {
		f(&leg)
	}
	done := make(chan struct{})
	go func() { leg.srv.ServeUDP(conn); close(done) }()
	t.Cleanup(func() { conn.Close(); leg.ua.Close(); <-done })
	return conn.LocalAddr().String(), reg
}

func newTrunk(t *testing.T, registrarAddr, password string) *Trunk {
	t.Helper()
	cfg := Config{Name: "prov", Registrar: registrarAddr, Domain: "provider.test", User: "4930123", Password: password, Lines: []int{1}}
	if err := cfg.Validate([]int{1, 2}); err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{
		Config: cfg, Uplink: listen(t), Phones: listen(t),
		Relays: &rtprelay.Pool{Listen: net.ListenPacket, LocalAddr: netip.MustParseAddr("127.0.0.1"),
			RemoteAddr: netip.MustParseAddr("127.0.0.1"), PortLo: 42000, PortHi: 42999, Max: 4},
		// Never ring 10.0.1.1 from the machine's own namespace.
		Ring: func(line int) sip.Uri { return sip.Uri{Scheme: "sip", User: "1", Host: "127.0.0.1", Port: 9} },
		Log:  labtest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func waitState(t *testing.T, tr *Trunk, want State) Status {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := tr.Status()
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("trunk status %q (%+v), want %s", st.String(), st, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRegisters(t *testing.T) {
	addr, reg := provider(t)
	tr := newTrunk(t, addr, "secret")
	stop := labtest.Serve(t, tr.Run)
	st := waitState(t, tr, Registered)
	if st.String() != "registered" || !strings.Contains(st.Contact, "4930123@127.0.0.1") || time.Until(st.Until) < 200*time.Second {
		t.Errorf("status %+v: want registered with our contact for about 300 s", st)
	}
	if _, ok := reg.Lookup(1); !ok {
		t.Error("the provider has no binding for the account")
	}
	stop()
	if st := tr.Status(); st.State != Stopped {
		t.Errorf("after Run: %s, want stopped", st)
	}
	// Run unregistered on its way out.
	if _, ok := reg.Lookup(1); ok {
		t.Error("the provider still has a binding after Run ended")
	}
}

func TestWrongPassword(t *testing.T) {
	addr, _ := provider(t)
	tr := newTrunk(t, addr, "wrong")
	labtest.Serve(t, tr.Run)
	st := waitState(t, tr, Failed)
	if !strings.HasPrefix(st.String(), "failed: 403 Forbidden: check the trunk's user and password, retrying in ") {
		t.Errorf("status %q, want a 403 failure that says what to check and when it retries", st.String())
	}
	if st.Failures != 1 || time.Until(st.RetryAt) > 5*time.Second {
		t.Errorf("status %+v: want 1 failure and a retry within 5 s", st)
	}
}

func TestNoAnswer(t *testing.T) {
	// A socket that never answers.
	silent := listen(t)
	defer silent.Close()
	tr := newTrunk(t, silent.LocalAddr().String(), "secret")
	labtest.Serve(t, tr.Run)
	deadline := time.Now().Add(20 * time.Second)
	for tr.Status().State != Failed {
		if time.Now().After(deadline) {
			t.Fatalf("status %s, want failed after the 10 s REGISTER timeout", tr.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := tr.Status(); !strings.Contains(st.Detail, "no answer from") {
		t.Errorf("detail %q, want it to say nobody answered", st.Detail)
	}
}

func TestDelays(t *testing.T) {
	for _, tt := range []struct {
		failures int
		want     time.Duration
	}{{1, 5 * time.Second}, {2, 10 * time.Second}, {3, 20 * time.Second}, {7, 5 * time.Minute}, {50, 5 * time.Minute}} {
		if got := retryDelay(tt.failures); got != tt.want {
			t.Errorf("retryDelay(%d) = %v, want %v", tt.failures, got, tt.want)
		}
	}
	for _, tt := range []struct {
		granted int
		want    time.Duration
	}{{300, 240 * time.Second}, {3600, 2880 * time.Second}, {60, 30 * time.Second}, {100, 70 * time.Second}} {
		if got := refreshDelay(tt.granted); got != tt.want {
			t.Errorf("refreshDelay(%d) = %v, want %v", tt.granted, got, tt.want)
		}
	}
}

var sdpOffer = "v=0\r\no=- 1 2 IN IP4 10.0.1.1\r\ns=-\r\nc=IN IP4 10.0.1.1\r\nt=0 0\r\nm=audio 10000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtcp:10001\r\n"

func TestSDP(t *testing.T) {
	for _, tt := range []struct {
		name string
		body string
		want string // "" for none
	}{
		{"session c", sdpOffer, "10.0.1.1:10000"},
		{"media c wins", "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5004 RTP/AVP 0\r\nc=IN IP4 5.6.7.8\r\n", "5.6.7.8:5004"},
		{"first audio", "c=IN IP4 1.1.1.1\r\nm=video 1 RTP/AVP 96\r\nc=IN IP4 9.9.9.9\r\nm=audio 2 RTP/AVP 0\r\nm=audio 3 RTP/AVP 0\r\n", "1.1.1.1:2"},
		{"no audio", "c=IN IP4 1.1.1.1\r\nm=video 1 RTP/AVP 96\r\n", ""},
		{"ipv6 only", "c=IN IP6 ::1\r\nm=audio 4 RTP/AVP 0\r\n", ""},
		{"bad port", "c=IN IP4 1.1.1.1\r\nm=audio 70000 RTP/AVP 0\r\n", ""},
		{"LF only", "c=IN IP4 1.1.1.1\nm=audio 9 RTP/AVP 0\n", "1.1.1.1:9"},
	} {
		got, ok := mediaDest([]byte(tt.body))
		if tt.want == "" && ok || tt.want != "" && got.String() != tt.want {
			t.Errorf("%s: mediaDest = %v, %v, want %q", tt.name, got, ok, tt.want)
		}
	}
	out := string(relaySDP([]byte(sdpOffer), netip.MustParseAddr("198.51.100.7"), 30000))
	want := "v=0\r\no=- 1 2 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n"
	if out != want {
		t.Errorf("relaySDP =\n%q\nwant\n%q", out, want)
	}
}

// FuzzSDP: the SDP readers never panic, and after relaySDP an offer with
// IPv4 audio points at the relay.
func FuzzSDP(f *testing.F) {
	f.Add([]byte(sdpOffer))
	f.Add([]byte("c=IN IP4 1.1.1.1\r\nm=video 1 RTP/AVP 96\r\nc=IN IP4 9.9.9.9\r\nm=audio 2 RTP/AVP 0\r\n"))
	f.Add([]byte("m=audio 1\r\nc=IN IP4 1.1.1.1"))
	relay := netip.MustParseAddrPort("198.51.100.7:30000")
	f.Fuzz(func(t *testing.T, body []byte) {
		_, ok := mediaDest(body)
		out := relaySDP(body, relay.Addr(), relay.Port())
		if !ok {
			return
		}
		if got, ok2 := mediaDest(out); !ok2 || got != relay {
			t.Fatalf("relaySDP(%q) = %q: mediaDest %v, %v, want %v", body, out, got, ok2, relay)
		}
	})
}

// A phone on loopback calls through the trunk with the withhold prefix:
// the provider gets exactly the number routed, the anonymous From,
// the account in P-Preferred-Identity and Privacy: id, and media flows
// through the relay; the phone's BYE reaches the provider.
func TestOutgoingWithheldCall(t *testing.T) {
	log := labtest.Logger(t)
	// The provider answers every INVITE with its SDP.
	provMedia := udpConn(t)
	invites := make(chan *sip.Request, 1)
	byes := make(chan *sip.Request, 1)
	regAddr, _ := provider(t, func(l *sipLeg) {
		l.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			invites <- req
			s, err := l.dua.ReadInvite(req, tx)
			if err != nil {
				t.Error(err)
				return
			}
			s.RespondSDP(relaySDP(req.Body(), netip.MustParseAddr("127.0.0.1"), provMedia.LocalAddr().(*net.UDPAddr).AddrPort().Port()))
		})
		l.srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
		l.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
			byes <- req
			tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
		})
	})

	cfg := Config{Name: "prov", Registrar: regAddr, Domain: "provider.test", User: "4930123", Password: "secret",
		CallerID: "Home", Lines: []int{1}, Prefix: "0"}
	tr, err := New(Options{
		Config: cfg, Uplink: listen(t), Phones: listen(t),
		Relays: &rtprelay.Pool{Listen: net.ListenPacket, LocalAddr: netip.MustParseAddr("127.0.0.1"),
			RemoteAddr: netip.MustParseAddr("127.0.0.1"), PortLo: 43000, PortHi: 43999, Max: 4},
		LineOf:   func(netip.Addr) int { return 1 },
		Withhold: privacy.Withhold{Prefix: "*31*"},
		Log:      log,
	})
	if err != nil {
		t.Fatal(err)
	}
	labtest.Serve(t, tr.Run)
	waitState(t, tr, Registered)

	// The phone.
	phoneConn := listen(t)
	phoneMedia := udpConn(t)
	phone, err := newLeg(phoneConn, "phone", log)
	if err != nil {
		t.Fatal(err)
	}
	go phone.srv.ServeUDP(phoneConn)
	t.Cleanup(func() { phoneConn.Close(); phone.ua.Close() })
	// The SIP service's redirect for "*31*0301234": withheld, number
	// 0301234 for the provider (it starts with the prefix's digit).
	uri := tr.CallURI("0301234", true)
	if uri.User != "*31*00301234" {
		t.Fatalf("CallURI = %s, want the user *31*00301234", uri.String())
	}
	req := sip.NewRequest(sip.INVITE, uri)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(relaySDP([]byte(sdpOffer), netip.MustParseAddr("127.0.0.1"), phoneMedia.LocalAddr().(*net.UDPAddr).AddrPort().Port()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, err := phone.ua.TransportLayer().GetConnection("udp", phone.addr.String()); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	sess, err := phone.dua.WriteInvite(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("the call was not answered: %v", err)
	}
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}

	in := <-invites
	for _, c := range []struct{ what, got, want string }{
		{"Request-URI user", in.Recipient.User, "0301234"},
		{"From", header(in, "From"), `"Anonymous" <sip:anonymous@anonymous.invalid>`},
		{"P-Preferred-Identity", header(in, "P-Preferred-Identity"), `"Home" <sip:4930123@provider.test>`},
		{"Privacy", header(in, "Privacy"), "id"},
	} {
		if !strings.HasPrefix(c.got, c.want) {
			t.Errorf("the provider got %s %q, want %q", c.what, c.got, c.want)
		}
	}
	if why := privacy.Classify(privacy.Headers{From: header(in, "From"), Privacy: header(in, "Privacy")}); why == privacy.NotAnonymous {
		t.Error("the provider's INVITE does not classify as anonymous")
	}

	// Media: the phone sends to the relay named in its answer; the
	// provider receives it, and its reply reaches the phone.
	relayLocal, ok := mediaDest(sess.InviteResponse.Body())
	if !ok {
		t.Fatalf("answer SDP %q names no media address", sess.InviteResponse.Body())
	}
	send(t, phoneMedia, relayLocal, "rtp from phone")
	got, src := recv(t, provMedia)
	if got != "rtp from phone" {
		t.Fatalf("provider media got %q", got)
	}
	send(t, provMedia, src, "rtp from provider")
	if got, _ := recv(t, phoneMedia); got != "rtp from provider" {
		t.Fatalf("phone media got %q", got)
	}
	if tr.Status().Calls != 1 {
		t.Errorf("Status().Calls = %d during the call, want 1", tr.Status().Calls)
	}

	if err := sess.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-byes:
	case <-ctx.Done():
		t.Fatal("the phone's BYE never reached the provider")
	}
	deadline := time.Now().Add(5 * time.Second)
	for tr.Status().Calls != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Status().Calls = %d after BYE, want 0", tr.Status().Calls)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func udpConn(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c *net.UDPConn, to netip.AddrPort, msg string) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
		t.Fatal(err)
	}
}

func recv(t *testing.T, c *net.UDPConn) (string, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("waiting for media: %v", err)
	}
	return string(buf[:n]), src
}

// Only the provider may ring the phones: an INVITE from another address
// (a SIP scanner reaching the trunk through a cone NAT) gets 403 and rings
// nothing.
func TestCallsOnlyFromProvider(t *testing.T) {
	addr, _ := provider(t)
	tr := newTrunk(t, addr, "secret")
	labtest.Serve(t, tr.Run)
	waitState(t, tr, Registered)

	conn, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	scanner, err := newLeg(conn, "scanner", labtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	go scanner.srv.ServeUDP(conn)
	t.Cleanup(func() { conn.Close(); scanner.ua.Close() })
	for {
		if _, err := scanner.ua.TransportLayer().GetConnection("udp", scanner.addr.String()); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	up := tr.up.addr
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "4930123", Host: up.Addr().String(), Port: int(up.Port())})
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte(sdpOffer))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := scanner.dua.WriteInvite(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	err = sess.WaitAnswer(ctx, sipgo.AnswerOptions{})
	var de *sipgo.ErrDialogResponse
	if !errors.As(err, &de) || de.Res.StatusCode != sip.StatusForbidden {
		t.Fatalf("INVITE from outside the provider: %v, want 403", err)
	}
}

// A registrar that finds the lifetime too short (423) gets asked again
// with its Min-Expires.
func TestMinExpires(t *testing.T) {
	addr, reg := provider(t)
	tr := newTrunk(t, addr, "secret")
	tr.expires = 30 // below pkg/registrar's minimum of 60
	labtest.Serve(t, tr.Run)
	st := waitState(t, tr, Registered)
	if left := time.Until(st.Until); left < 50*time.Second || left > 61*time.Second {
		t.Errorf("registered for %v, want the registrar's minimum, 60 s", left)
	}
	if _, ok := reg.Lookup(1); !ok {
		t.Error("the provider has no binding")
	}
}

// Only this node's phones, 10.0.s.1 with s a line (1..254, numplan's
// bounds), may call out; line 254 is a line like any other.
func TestLineOf(t *testing.T) {
	var tr Trunk
	for a, want := range map[string]int{
		"10.0.1.1": 1, "10.0.254.1": 254, "10.0.255.1": 0, "10.0.0.1": 0,
		"10.0.1.2": 0, "10.7.1.1": 0, "192.168.0.1": 0, "::ffff:10.0.3.1": 3, "::1": 0,
	} {
		if got := tr.lineOf(netip.MustParseAddr(a)); got != want {
			t.Errorf("lineOf(%s) = %d, want %d", a, got, want)
		}
	}
}
