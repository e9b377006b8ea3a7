package trunk

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"

	"github.com/peerline/peerline/pkg/labtest"
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
// loopback, with one account 4930123 / secret.
func provider(t *testing.T) (addr string, reg *registrar.Registrar) {
	t.Helper()
	log := labtest.Logger(t)
	reg = registrar.New(sipauth.Config{Realm: "provider.test", Offer: sipauth.MD5}, func(user string) (int, string, bool) {
		if user == "4930123" {
			return 1, "secret", true
		}
		return 0, "", false
	}, log)
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnRegister(reg.Handle)
	conn := listen(t)
	done := make(chan struct{})
	go func() { srv.ServeUDP(conn); close(done) }()
	t.Cleanup(func() { conn.Close(); ua.Close(); <-done })
	return conn.LocalAddr().String(), reg
}

func newTrunk(t *testing.T, registrarAddr, password string) *Trunk {
	t.Helper()
	cfg := Config{Name: "prov", Registrar: registrarAddr, Domain: "provider.test", User: "4930123", Password: password, Lines: []int{1}}
	if err := cfg.Validate(2); err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{
		Config: cfg, Uplink: listen(t), Phones: listen(t),
		Relays: &rtprelay.Pool{Listen: net.ListenPacket, LocalAddr: netip.MustParseAddr("127.0.0.1"),
			RemoteAddr: netip.MustParseAddr("127.0.0.1"), PortLo: 42000, PortHi: 42999, Max: 4},
		Log: labtest.Logger(t),
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

func TestConfigValidate(t *testing.T) {
	good := Config{Name: "sipgate", Registrar: "sip.example:5060", User: "4930123", Password: "pw", Lines: []int{1}, Prefix: "0"}
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"good", func(*Config) {}, ""},
		{"no name", func(c *Config) { c.Name = "" }, "name: want 1 to 32"},
		{"bad registrar", func(c *Config) { c.Registrar = "sip:x@y" }, "without sip:"},
		{"bad port", func(c *Config) { c.Registrar = "h:99999" }, "port 1-65535"},
		{"no password", func(c *Config) { c.Password = "" }, "copy the account's SIP password"},
		{"no lines", func(c *Config) { c.Lines = nil }, "at least one line"},
		{"missing line", func(c *Config) { c.Lines = []int{3} }, "line 3 does not exist"},
		{"bad prefix", func(c *Config) { c.Prefix = "0a" }, "prefix"},
		{"short expires", func(c *Config) { c.Expires = 10 }, "expires 10"},
		{"user with @", func(c *Config) { c.User = "a@b" }, "user"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			err := c.Validate(2)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
	other := good
	other.Name = "pbx"
	other.Prefix = "00"
	if err := ValidateAll([]Config{good, other}, 2); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("ValidateAll(overlapping prefixes) = %v", err)
	}
	other.Prefix = "9"
	if err := ValidateAll([]Config{good, other}, 2); err != nil {
		t.Errorf("ValidateAll = %v", err)
	}
	if err := ValidateAll([]Config{good, good}, 2); err == nil || !strings.Contains(err.Error(), "used twice") {
		t.Errorf("ValidateAll(same name) = %v", err)
	}
	for _, tt := range []struct {
		prefix, dialled, number string
		ok                      bool
	}{{"0", "0301234", "301234", true}, {"0", "301234", "", false}, {"0", "0", "", false}, {"", "301234", "301234", true}} {
		c := good
		c.Prefix = tt.prefix
		n, ok := c.Number(tt.dialled)
		if n != tt.number || ok != tt.ok {
			t.Errorf("prefix %q: Number(%q) = %q, %v, want %q, %v", tt.prefix, tt.dialled, n, ok, tt.number, tt.ok)
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
