package console

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/adminpass"
	"github.com/peerline/peerline/pkg/control"
)

var fastHash = adminpass.Params{Memory: 64, Time: 1, Threads: 1}

// fakeNode answers the control commands the console uses and records the
// changes it was asked for.
type fakeNode struct {
	mu      sync.Mutex
	status  control.Status
	phones  []control.Phone
	calls   []string
	joins   map[string]control.JoinProgress
	invites []control.InviteEntry
}

func (f *fakeNode) handlers() control.Local {
	rec := func(cmd string, raw json.RawMessage) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, cmd+" "+string(raw))
	}
	return control.Local{
		control.CmdStatus: func(context.Context, json.RawMessage) (any, error) { return f.status, nil },
		control.CmdPhones: func(context.Context, json.RawMessage) (any, error) { return f.phones, nil },
		control.CmdCalls:  func(context.Context, json.RawMessage) (any, error) { return []control.CallInfo{}, nil },
		control.CmdLines: func(context.Context, json.RawMessage) (any, error) {
			return control.Lines{Service: "on", Node: "alice",
				Lines: []control.Line{{Line: 1, Label: "kitchen", URIs: []string{"sip:1@alice", "sip:kitchen@alice"}, Address: netip.MustParseAddr("10.0.1.1"), Account: true,
					Registration: &control.Registration{Source: "10.0.1.1:5060", UserAgent: "<GXP>", Digest: "SHA-256"}}},
				Peers:     []control.PeerLine{{Peer: 7, Name: "bob", Line: 2, Label: "<hall>", URI: "sip:2@bob", Short: "7*2", Dial: "bob.2", Address: netip.MustParseAddr("10.7.2.1")}},
				Decisions: []control.DialDecision{{From: "10.0.1.1:5060", Dialled: "bob.2@10.0.1.2", Decision: "peer", Code: 302, Target: "sip:2@10.7.2.1", Reason: "name bob"}},
			}, nil
		},
		control.CmdTrunks: func(context.Context, json.RawMessage) (any, error) {
			return control.Trunks{Trunks: []control.Trunk{
				{Name: "sipgate", Registrar: "sipgate.de:5060", User: "4930123456", Prefix: "0", Lines: []int{1, 2}, State: "registered", Status: "registered",
					Contact: "sip:4930123456@203.0.113.5:40123", Uplink: "192.168.1.2:5062", Calls: 1},
				{Name: "<pbx>", Registrar: "pbx.example:5060", User: "21", Lines: []int{3}, State: "failed",
					Status: "failed: 403 Forbidden: check the trunk's user and password, retrying in 20 s"},
			}}, nil
		},
		control.CmdRename: func(_ context.Context, raw json.RawMessage) (any, error) {
			rec(control.CmdRename, raw)
			var a control.RenameArgs
			json.Unmarshal(raw, &a)
			if a.Peer != "7" {
				return nil, errors.New("no peer with index " + a.Peer)
			}
			return control.PeerRef{Index: 7, Name: a.Name}, nil
		},
		control.CmdRemove: func(_ context.Context, raw json.RawMessage) (any, error) {
			rec(control.CmdRemove, raw)
			return control.PeerRef{Index: 7, Name: "bob"}, nil
		},
		control.CmdPing: func(_ context.Context, raw json.RawMessage) (any, error) {
			return control.PingResult{PeerRef: control.PeerRef{Index: 7}, RTT: control.Duration(12 * time.Millisecond), Path: "direct"}, nil
		},
		control.CmdInvite: func(_ context.Context, raw json.RawMessage) (any, error) {
			rec(control.CmdInvite, raw)
			return control.InviteResult{Code: "ABCDE-FGHIJ", URI: "peerline:ABCDEFGHIJ", ID: "iv1", Expires: time.Now().Add(24 * time.Hour), LongCode: "LONG"}, nil
		},
		control.CmdInvites: func(context.Context, json.RawMessage) (any, error) { return f.invites, nil },
		control.CmdRevokeInvite: func(_ context.Context, raw json.RawMessage) (any, error) {
			rec(control.CmdRevokeInvite, raw)
			return nil, nil
		},
		control.CmdJoinStart: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.JoinArgs
			json.Unmarshal(raw, &a)
			if a.Code == "" || strings.Contains(a.Code, "WRONG") {
				return nil, errors.New("the code has a typo in group 2: check it against your friend's message")
			}
			rec(control.CmdJoinStart, raw)
			return control.JoinProgress{ID: "j1"}, nil
		},
		control.CmdJoinProgress: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.JoinProgressArgs
			json.Unmarshal(raw, &a)
			f.mu.Lock()
			defer f.mu.Unlock()
			p, ok := f.joins[a.ID]
			if !ok {
				return nil, errors.New("no such join here")
			}
			return p, nil
		},
		control.CmdLabelLine: func(_ context.Context, raw json.RawMessage) (any, error) {
			rec(control.CmdLabelLine, raw)
			return nil, nil
		},
		control.CmdForgetPhone: func(_ context.Context, raw json.RawMessage) (any, error) {
			rec(control.CmdForgetPhone, raw)
			return nil, nil
		},
		control.CmdLogs: func(context.Context, json.RawMessage) (any, error) {
			return []control.LogLine{{Time: time.Now(), Level: "WARN", Text: "msg=<b>trouble</b>"}}, nil
		},
		control.CmdDiagnostics: func(context.Context, json.RawMessage) (any, error) {
			return control.Diagnostics{Files: []control.DiagnosticFile{{Name: "status.json", Data: []byte("{}")}, {Name: "../evil", Data: []byte("x")}}}, nil
		},
		control.CmdSettings: func(context.Context, json.RawMessage) (any, error) {
			return control.Settings{Name: "alice", Uplink: "wlan0", Writable: true, WiFiSSID: "home", WiFiPasswordSet: true}, nil
		},
		control.CmdSetSettings: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.SettingsArgs
			json.Unmarshal(raw, &a)
			if a.TimeZone == "Mars/Base" {
				return nil, errors.New(`line 3: time_zone: "Mars/Base" is not in the tz database (check the spelling and the capitals). Fix: write a zone from the tz database`)
			}
			rec(control.CmdSetSettings, raw)
			return control.Settings{Name: a.Name}, nil
		},
	}
}

func (f *fakeNode) called(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

type testEnv struct {
	t     *testing.T
	c     *Console
	node  *fakeNode
	now   time.Time
	pwf   string
	phone http.Handler
	up    http.Handler
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	e := &testEnv{t: t, node: &fakeNode{joins: map[string]control.JoinProgress{}}, now: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	e.node.status = control.Status{Name: "alice", Peers: []control.Peer{{Index: 7, Name: "bob", Online: true, Path: "relay", PathReason: "symmetric NAT on both sides", MTU: 1184}}}
	e.pwf = filepath.Join(t.TempDir(), adminpass.FileName)
	e.c = New(Options{
		Control:      e.node.handlers(),
		Status:       http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "status page") }),
		PasswordFile: e.pwf,
		Started:      e.now,
		Hash:         fastHash,
		Now:          func() time.Time { return e.now },
	})
	e.phone, e.up = e.c.Handler(PhonePort), e.c.Handler(Uplink)
	return e
}

// browser is one client: its address, zone and cookies.
type browser struct {
	e       *testEnv
	h       http.Handler
	addr    string
	host    string
	cookies map[string]string
}

func (e *testEnv) browser(zone Zone, addr string) *browser {
	h, host := e.phone, "10.0.1.2"
	if zone == Uplink {
		h, host = e.up, "192.168.1.50"
	}
	return &browser{e: e, h: h, addr: addr, host: host, cookies: map[string]string{}}
}

func (b *browser) do(method, path string, form url.Values, hdr ...string) *httptest.ResponseRecorder {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, "http://"+b.host+path, body)
	r.RemoteAddr = b.addr
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", "http://"+b.host)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			r.Host = hdr[i+1]
			continue
		}
		r.Header.Set(hdr[i], hdr[i+1])
	}
	for k, v := range b.cookies {
		r.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	w := httptest.NewRecorder()
	b.h.ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
	return w
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf fetches path and returns the page's CSRF token.
func (b *browser) csrf(path string) string {
	b.e.t.Helper()
	w := b.do("GET", path, nil)
	m := csrfRE.FindStringSubmatch(w.Body.String())
	if m == nil {
		b.e.t.Fatalf("GET %s: no CSRF token in the page (status %d): %s", path, w.Code, w.Body.String())
	}
	return m[1]
}

func (b *browser) post(path, csrfFrom string, kv ...string) *httptest.ResponseRecorder {
	b.e.t.Helper()
	f := url.Values{"csrf": {b.csrf(csrfFrom)}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	return b.do("POST", path, f)
}

func (b *browser) setup(pw string) *httptest.ResponseRecorder {
	return b.post("/setup", "/setup", "password", pw, "again", pw)
}

func (b *browser) login(pw string) *httptest.ResponseRecorder {
	return b.post("/login", "/login", "password", pw, "next", "/peers")
}

func loggedIn(t *testing.T) (*testEnv, *browser) {
	t.Helper()
	e := newEnv(t)
	b := e.browser(PhonePort, "10.0.1.1:40000")
	if w := b.setup("correct horse"); w.Code != http.StatusSeeOther {
		t.Fatalf("setup: %d %s", w.Code, w.Body)
	}
	return e, b
}

func TestStatusOpenOthersNeedLogin(t *testing.T) {
	e := newEnv(t)
	for _, zone := range []Zone{PhonePort, Uplink} {
		b := e.browser(zone, "192.168.1.20:5000")
		if zone == PhonePort {
			b.addr = "10.0.1.1:5000"
		}
		if w := b.do("GET", "/", nil); w.Code != 200 || w.Body.String() != "status page" {
			t.Errorf("%v: GET / = %d %q, want the status page", zone, w.Code, w.Body)
		}
		for _, p := range []string{"/peers", "/invite", "/join", "/join/j1", "/phones", "/lines", "/calls", "/logs", "/settings", "/peers/remove?peer=7", "/phones/forget?line=1"} {
			w := b.do("GET", p, nil)
			if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/login?next=") {
				t.Errorf("%v: GET %s without login = %d %s, want a redirect to /login", zone, p, w.Code, w.Header().Get("Location"))
			}
		}
		for _, p := range []string{"/peers/rename", "/peers/remove", "/peers/ping", "/invite", "/invite/revoke", "/join", "/phones/label", "/phones/forget", "/diagnostics", "/settings", "/password", "/logout"} {
			if w := b.do("POST", p, url.Values{"peer": {"7"}}); w.Code != http.StatusUnauthorized {
				t.Errorf("%v: POST %s without login = %d, want 401", zone, p, w.Code)
			}
		}
	}
	if n := e.node.called(""); len(n) != 0 {
		t.Errorf("changes made without a login: %v", n)
	}
}

// The Lines page shows the trunks: name, prefix, lines, calls and
// status, escaped, and never the account, the registrar or addresses.
func TestLinesPageTrunks(t *testing.T) {
	_, b := loggedIn(t)
	w := b.do("GET", "/lines", nil)
	if w.Code != 200 {
		t.Fatalf("GET /lines = %d\n%s", w.Code, w.Body)
	}
	body := w.Body.String()
	for _, want := range []string{"Outside lines", "<td>sipgate</td>", "<td>1, 2</td>", "<td>1</td>", `<span class="ok">registered</span>`,
		"<td>&lt;pbx&gt;</td>", `<span class="bad">failed: 403 Forbidden: check the trunk&#39;s user and password, retrying in 20 s</span>`} {
		if !strings.Contains(body, want) {
			t.Errorf("/lines lacks %q:\n%s", want, body)
		}
	}
	for _, secret := range []string{"4930123456", "sipgate.de", "pbx.example", "203.0.113.5", "192.168.1.2"} {
		if strings.Contains(body, secret) {
			t.Errorf("/lines shows %q, part of a trunk's account or addresses", secret)
		}
	}
}

// The Lines page shows the SIP service's view: URIs, registration,
// peers' short numbers and names, decisions, all escaped.
func TestLinesPage(t *testing.T) {
	_, b := loggedIn(t)
	w := b.do("GET", "/lines", nil)
	if w.Code != 200 {
		t.Fatalf("GET /lines = %d\n%s", w.Code, w.Body)
	}
	for _, want := range []string{"sip:1@alice, sip:kitchen@alice", "registered", "&lt;GXP&gt;", "digest SHA-256", "7*2", "bob.2", "sip:2@bob", "2 · &lt;hall&gt;", "302 peer", "name bob"} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("/lines lacks %q:\n%s", want, w.Body)
		}
	}
}

func TestFirstUseRule(t *testing.T) {
	t.Run("phone port within the window", func(t *testing.T) {
		e := newEnv(t)
		b := e.browser(PhonePort, "10.0.1.1:4000")
		w := b.setup("correct horse")
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/peers" {
			t.Fatalf("setup = %d %s, want a redirect to /peers", w.Code, w.Body)
		}
		ck := w.Result().Cookies()
		var sess *http.Cookie
		for _, c := range ck {
			if c.Name == sessionCookie {
				sess = c
			}
		}
		if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode {
			t.Fatalf("session cookie = %+v, want HttpOnly and SameSite=Strict", sess)
		}
		if w := b.do("GET", "/peers", nil); w.Code != 200 || !strings.Contains(w.Body.String(), "Password set") {
			t.Errorf("after setup GET /peers = %d, want the peers page with the flash", w.Code)
		}
		if w := b.do("GET", "/peers", nil); !strings.Contains(w.Body.String(), "<td class=\"opt\">1184 bytes;") {
			t.Errorf("GET /peers does not show the peer's tunnel MTU:\n%s", w.Body)
		}
		enc, err := adminpass.Load(e.pwf)
		if ok, _ := adminpass.Verify(enc, "correct horse"); err != nil || !ok {
			t.Errorf("stored hash does not verify: %v", err)
		}
	})
	t.Run("refused on the uplink", func(t *testing.T) {
		e := newEnv(t)
		b := e.browser(Uplink, "192.168.1.20:4000")
		if w := b.do("GET", "/setup", nil); w.Code != http.StatusForbidden || strings.Contains(w.Body.String(), `name="password"`) {
			t.Errorf("GET /setup on the uplink = %d, want 403 without a form", w.Code)
		}
		tok := b.cookies[preCookie]
		w := b.do("POST", "/setup", url.Values{"csrf": {tok}, "password": {"correct horse"}, "again": {"correct horse"}})
		if w.Code != http.StatusForbidden {
			t.Errorf("POST /setup on the uplink = %d, want 403", w.Code)
		}
		if _, err := adminpass.Load(e.pwf); !errors.Is(err, adminpass.ErrNotSet) {
			t.Errorf("a password was stored from the uplink")
		}
	})
	t.Run("refused after the window", func(t *testing.T) {
		e := newEnv(t)
		b := e.browser(PhonePort, "10.0.1.1:4000")
		tok := b.csrf("/setup")
		e.now = e.now.Add(SetupWindow + time.Second)
		w := b.do("POST", "/setup", url.Values{"csrf": {tok}, "password": {"correct horse"}, "again": {"correct horse"}})
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "Switch the Pi off and on") {
			t.Errorf("setup after the window = %d, want 403 saying how to reopen it", w.Code)
		}
	})
	t.Run("second device cannot take over", func(t *testing.T) {
		e, _ := loggedIn(t)
		other := e.browser(PhonePort, "10.0.2.1:4000")
		if w := other.do("GET", "/setup", nil); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "already set") {
			t.Errorf("GET /setup after the password = %d, want 403", w.Code)
		}
		tok := other.cookies[preCookie]
		w := other.do("POST", "/setup", url.Values{"csrf": {tok}, "password": {"mallory's pass"}, "again": {"mallory's pass"}})
		if w.Code != http.StatusForbidden {
			t.Errorf("POST /setup after the password = %d, want 403", w.Code)
		}
		enc, _ := adminpass.Load(e.pwf)
		if ok, _ := adminpass.Verify(enc, "correct horse"); !ok {
			t.Error("the password was replaced by a second device")
		}
		if w := other.login("mallory's pass"); w.Code != http.StatusUnauthorized {
			t.Errorf("login with a wrong password = %d, want 401", w.Code)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		e := newEnv(t)
		b := e.browser(PhonePort, "10.0.1.1:4000")
		if w := b.setup("short"); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "at least 8") {
			t.Errorf("short password = %d, want 400 saying the length", w.Code)
		}
		if w := b.post("/setup", "/setup", "password", "correct horse", "again", "correct hors"); w.Code != http.StatusBadRequest {
			t.Errorf("mismatched passwords = %d, want 400", w.Code)
		}
		if w := b.do("POST", "/setup", url.Values{"password": {"correct horse"}, "again": {"correct horse"}}); w.Code != http.StatusForbidden {
			t.Errorf("setup without a CSRF token = %d, want 403", w.Code)
		}
		if _, err := adminpass.Load(e.pwf); !errors.Is(err, adminpass.ErrNotSet) {
			t.Error("a password was stored from a bad form")
		}
	})
}

func TestLoginRateLimit(t *testing.T) {
	e, _ := loggedIn(t)
	b := e.browser(Uplink, "192.168.1.20:4000")
	codes := []int{}
	for range 7 {
		codes = append(codes, b.login("wrong password").Code)
	}
	want := []int{401, 401, 401, 401, 401, 429, 429}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Errorf("7 wrong logins = %v, want %v", codes, want)
	}
	// Even the right password waits for the bucket.
	if w := b.login("correct horse"); w.Code != http.StatusTooManyRequests {
		t.Errorf("right password while limited = %d, want 429", w.Code)
	}
	e.now = e.now.Add(13 * time.Second)
	if w := b.login("correct horse"); w.Code != http.StatusSeeOther {
		t.Errorf("right password after 13 s = %d, want 303", w.Code)
	}
	// Other sources have their own bucket but share the global one.
	var limited int
	for i := range 20 {
		o := e.browser(Uplink, fmt.Sprintf("192.168.1.%d:4000", 100+i))
		if o.login("wrong password").Code == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited < 10 {
		t.Errorf("20 sources, one wrong login each: %d limited, want the global limit to stop at least 10", limited)
	}
}

func TestCSRFAndOrigin(t *testing.T) {
	e, b := loggedIn(t)
	if w := b.do("POST", "/peers/remove", url.Values{"peer": {"7"}}); w.Code != http.StatusForbidden {
		t.Errorf("remove without a CSRF token = %d, want 403", w.Code)
	}
	if w := b.do("POST", "/peers/remove", url.Values{"peer": {"7"}, "csrf": {"forged"}}); w.Code != http.StatusForbidden {
		t.Errorf("remove with a wrong CSRF token = %d, want 403", w.Code)
	}
	tok := b.csrf("/peers")
	if w := b.do("POST", "/peers/remove", url.Values{"peer": {"7"}, "csrf": {tok}}, "Origin", "http://evil.example"); w.Code != http.StatusForbidden {
		t.Errorf("cross-origin remove = %d, want 403", w.Code)
	}
	if got := e.node.called(control.CmdRemove); len(got) != 0 {
		t.Errorf("peer removed by a forged form: %v", got)
	}
	// Another session's token does not work either.
	other := e.browser(PhonePort, "10.0.2.1:1")
	other.login("correct horse")
	if w := b.do("POST", "/peers/remove", url.Values{"peer": {"7"}, "csrf": {other.csrf("/peers")}}); w.Code != http.StatusForbidden {
		t.Errorf("remove with another session's token = %d, want 403", w.Code)
	}
	if w := b.do("POST", "/peers/remove", url.Values{"peer": {"7"}, "csrf": {tok}}); w.Code != http.StatusSeeOther {
		t.Errorf("remove with the right token = %d, want 303", w.Code)
	}
	if got := e.node.called(control.CmdRemove); len(got) != 1 {
		t.Errorf("remove calls = %v, want 1", got)
	}
}

func TestRefusedSources(t *testing.T) {
	e, _ := loggedIn(t)
	for _, tc := range []struct {
		name string
		zone Zone
		addr string
		host string
		want int
	}{
		{"peer address on the phone port", PhonePort, "10.7.1.1:5060", "10.0.1.2", 403},
		{"wire address", PhonePort, "10.255.1.1:5060", "10.0.1.2", 403},
		{"phone", PhonePort, "10.0.3.1:1", "10.0.1.2", 200},
		{"home network in 10/8 on the uplink", Uplink, "10.7.1.20:1", "10.7.1.5", 200},
		{"rebinding host name", Uplink, "192.168.1.20:1", "evil.example", 421},
		{"mDNS name", Uplink, "192.168.1.20:1", "alice.local", 200},
		{"IPv6 literal", Uplink, "[fd00::20]:1", "[fd00::5]:80", 200},
	} {
		b := e.browser(tc.zone, tc.addr)
		if w := b.do("GET", "/", nil, "Host", tc.host); w.Code != tc.want {
			t.Errorf("%s: GET / = %d, want %d", tc.name, w.Code, tc.want)
		}
	}
}

func TestPagesEscapeMarkup(t *testing.T) {
	e, b := loggedIn(t)
	evil := `<script>alert(1)</script>`
	e.node.status.Peers[0].Name = evil
	e.node.phones = []control.Phone{{Line: 1, MAC: "00:0b:82:01:02:03", Model: evil, Label: evil, LastSeen: e.now}}
	for _, p := range []string{"/peers", "/phones", "/peers/remove?peer=7", "/logs"} {
		w := b.do("GET", p, nil)
		if w.Code != 200 {
			t.Errorf("GET %s = %d", p, w.Code)
		}
		if strings.Contains(w.Body.String(), "<script>") || strings.Contains(w.Body.String(), "<b>trouble") {
			t.Errorf("GET %s: markup from a name is not escaped", p)
		}
	}
	w := b.post("/peers/rename", "/peers", "peer", "7", "name", evil)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("rename = %d", w.Code)
	}
	if w := b.do("GET", "/peers", nil); !strings.Contains(w.Body.String(), "&lt;script&gt;") {
		t.Error("flash after rename is not escaped")
	}
}

func TestFormsReachTheNode(t *testing.T) {
	e, b := loggedIn(t)
	for _, tc := range []struct {
		path, from string
		kv         []string
		cmd        string
		wantArgs   string
		wantTo     string
	}{
		{"/peers/rename", "/peers", []string{"peer", "7", "name", "Bob K."}, control.CmdRename, `{"peer":"7","name":"Bob K."}`, "/peers"},
		{"/peers/remove", "/peers/remove?peer=7", []string{"peer", "7"}, control.CmdRemove, `{"peer":"7"}`, "/peers"},
		{"/invite/revoke", "/invite", []string{"id", "iv1"}, control.CmdRevokeInvite, `{"id":"iv1"}`, "/invite"},
		{"/phones/label", "/phones", []string{"line", "2", "label", "kitchen"}, control.CmdLabelLine, `{"line":2,"label":"kitchen"}`, "/phones"},
		{"/phones/forget", "/phones/forget?line=2", []string{"line", "2"}, control.CmdForgetPhone, `{"line":2}`, "/phones"},
		{"/join", "/join", []string{"code", " CODE-1 "}, control.CmdJoinStart, `{"code":"CODE-1"}`, "/join/j1"},
	} {
		w := b.post(tc.path, tc.from, tc.kv...)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != tc.wantTo {
			t.Errorf("POST %s = %d → %q, want 303 → %s", tc.path, w.Code, w.Header().Get("Location"), tc.wantTo)
		}
		got := e.node.called(tc.cmd)
		if len(got) == 0 || got[len(got)-1] != tc.cmd+" "+tc.wantArgs {
			t.Errorf("POST %s: node got %v, want %s %s", tc.path, got, tc.cmd, tc.wantArgs)
		}
	}
	// A wrong peer: the node's message reaches the page.
	b.post("/peers/rename", "/peers", "peer", "99", "name", "x")
	if w := b.do("GET", "/peers", nil); !strings.Contains(w.Body.String(), "no peer with index 99") {
		t.Error("rename of a missing peer: the error is not shown")
	}
	if w := b.post("/phones/label", "/phones", "line", "two"); w.Code != http.StatusSeeOther || len(e.node.called(control.CmdLabelLine)) != 1 {
		t.Errorf("label with a bad line number reached the node")
	}
}

func TestOversizedForm(t *testing.T) {
	_, b := loggedIn(t)
	tok := b.csrf("/join")
	w := b.do("POST", "/join", url.Values{"csrf": {tok}, "code": {strings.Repeat("A", 2*maxForm)}})
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized form = %d, want 413", w.Code)
	}
}

func TestInviteAndJoin(t *testing.T) {
	e, b := loggedIn(t)
	w := b.post("/invite", "/invite")
	body := w.Body.String()
	if w.Code != 200 || !strings.Contains(body, "ABCDE-FGHIJ") || !strings.Contains(body, `src="data:image/png;base64,`) {
		t.Fatalf("POST /invite = %d; want the code and a QR image:\n%s", w.Code, body)
	}
	if w := b.post("/join", "/join", "code", "WRONG-CODE</textarea><b>"); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "typo in group 2") || !strings.Contains(w.Body.String(), "WRONG-CODE&lt;/textarea&gt;&lt;b&gt;</textarea>") {
		t.Errorf("join with a wrong code = %d, want 400 with the reason", w.Code)
	}
	e.node.joins["j1"] = control.JoinProgress{ID: "j1", Steps: []control.JoinStep{{Name: "Code checked", State: control.StepDone}, {Name: "Rendezvous server contacted", State: control.StepActive}}}
	w = b.do("GET", "/join/j1", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `http-equiv="refresh"`) || !strings.Contains(w.Body.String(), "in progress") {
		t.Errorf("join progress = %d, want a refreshing page:\n%s", w.Code, w.Body)
	}
	e.node.joins["j1"] = control.JoinProgress{ID: "j1", Done: true, Peer: &control.PeerRef{Index: 4, Name: "alice"}, Steps: []control.JoinStep{{Name: "Path chosen", State: control.StepDone, Detail: "direct"}}}
	w = b.do("GET", "/join/j1", nil)
	if strings.Contains(w.Body.String(), `http-equiv="refresh"`) || !strings.Contains(w.Body.String(), "10.4.s.1") {
		t.Errorf("finished join: want no refresh and the peer's address:\n%s", w.Body)
	}
	if w := b.do("GET", "/join/nope", nil); w.Code != http.StatusNotFound {
		t.Errorf("unknown join = %d, want 404", w.Code)
	}
}

func TestDiagnostics(t *testing.T) {
	_, b := loggedIn(t)
	w := b.post("/diagnostics", "/logs")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/gzip" {
		t.Fatalf("diagnostics = %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	gz, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if want := "[peerline-diagnostics/status.json peerline-diagnostics/.._evil]"; fmt.Sprint(names) != want {
		t.Errorf("bundle holds %v, want %s", names, want)
	}
}

func TestSettings(t *testing.T) {
	e, b := loggedIn(t)
	w := b.do("GET", "/settings", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `value="alice"`) || strings.Contains(w.Body.String(), "wifi_password\" value") {
		t.Errorf("settings page = %d:\n%s", w.Code, w.Body)
	}
	w = b.post("/settings", "/settings", "name", "kitchen", "time_zone", "Mars/Base", "rendezvous", "rv.example.org:3478 KEY")
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "not in the tz database") || !strings.Contains(w.Body.String(), `value="kitchen"`) {
		t.Errorf("bad time zone = %d; want 400 with the message and the typed values kept:\n%s", w.Code, w.Body)
	}
	w = b.post("/settings", "/settings", "name", "kitchen", "time_zone", "Europe/Berlin", "rendezvous", "a:1 K\r\nb:2 L\r\n")
	if w.Code != http.StatusSeeOther {
		t.Fatalf("settings = %d", w.Code)
	}
	got := e.node.called(control.CmdSetSettings)
	if len(got) != 1 || !strings.Contains(got[0], `"rendezvous":["a:1 K","b:2 L",""]`) {
		t.Errorf("settings sent %v", got)
	}
}

func TestPasswordChangeLogsOthersOut(t *testing.T) {
	e, b := loggedIn(t)
	other := e.browser(Uplink, "192.168.1.20:1")
	other.login("correct horse")
	if w := other.do("GET", "/peers", nil); w.Code != 200 {
		t.Fatalf("other browser not logged in: %d", w.Code)
	}
	if w := b.post("/password", "/settings", "current", "wrong one!", "password", "new password", "again", "new password"); w.Code != http.StatusSeeOther {
		t.Fatalf("change = %d", w.Code)
	}
	enc, _ := adminpass.Load(e.pwf)
	if ok, _ := adminpass.Verify(enc, "correct horse"); !ok {
		t.Fatal("password changed without the current one")
	}
	b.post("/password", "/settings", "current", "correct horse", "password", "new password", "again", "new password")
	enc, _ = adminpass.Load(e.pwf)
	if ok, _ := adminpass.Verify(enc, "new password"); !ok {
		t.Fatal("password not changed")
	}
	if w := other.do("GET", "/peers", nil); w.Code != http.StatusSeeOther {
		t.Errorf("other browser still logged in after a password change: %d", w.Code)
	}
	if w := b.do("GET", "/peers", nil); w.Code != 200 {
		t.Errorf("the changing browser was logged out: %d", w.Code)
	}
}

func TestSessionExpiry(t *testing.T) {
	e, b := loggedIn(t)
	e.now = e.now.Add(idleTimeout + time.Second)
	if w := b.do("GET", "/peers", nil); w.Code != http.StatusSeeOther {
		t.Errorf("after %v idle GET /peers = %d, want a redirect to /login", idleTimeout, w.Code)
	}
}

func TestEveryPageRenders(t *testing.T) {
	e, b := loggedIn(t)
	e.node.phones = []control.Phone{{Line: 1, MAC: "00:0b:82:01:02:03", Model: "GXP1610", LastSeen: e.now}}
	e.node.invites = []control.InviteEntry{{ID: "iv1", State: "pending", Expires: e.now.Add(time.Hour)}}
	for _, p := range []string{"/peers", "/invite", "/join", "/phones", "/calls", "/logs", "/settings", "/login", "/peers/remove?peer=7", "/phones/forget?line=1"} {
		w := b.do("GET", p, nil)
		if p == "/login" {
			if w.Code != http.StatusSeeOther {
				t.Errorf("GET /login while logged in = %d, want a redirect", w.Code)
			}
			continue
		}
		if w.Code != 200 {
			t.Errorf("GET %s = %d", p, w.Code)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("GET %s: CSP %q", p, csp)
		}
		if strings.Contains(w.Body.String(), "<form") && !strings.Contains(w.Body.String(), `name="csrf"`) {
			t.Errorf("GET %s: a form without a CSRF token", p)
		}
	}
}

func TestMount(t *testing.T) {
	e := newEnv(t)
	e.c.Mount("/charts/x.svg", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "chart") }), false)
	e.c.Mount("/metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !e.c.Authed(r) && r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "metrics")
	}), true)
	b := &browser{e: e, h: e.c.Handler(PhonePort), addr: "10.0.1.1:1", host: "10.0.1.2", cookies: map[string]string{}}
	if w := b.do("GET", "/charts/x.svg", nil); w.Code != http.StatusSeeOther {
		t.Errorf("chart without a login = %d, want a redirect", w.Code)
	}
	if w := b.do("GET", "/metrics", nil); w.Code != http.StatusUnauthorized {
		t.Errorf("metrics without a login or token = %d, want 401", w.Code)
	}
	if w := b.do("GET", "/metrics", nil, "Authorization", "Bearer tok"); w.Code != 200 {
		t.Errorf("metrics with the token = %d", w.Code)
	}
	b.setup("correct horse")
	if w := b.do("GET", "/charts/x.svg", nil); w.Code != 200 || w.Body.String() != "chart" {
		t.Errorf("chart with a login = %d %q", w.Code, w.Body)
	}
	if w := b.do("GET", "/metrics", nil); w.Code != 200 {
		t.Errorf("metrics with a login = %d", w.Code)
	}
}

// TestPeersShowRewriterDrops: the peers page says what each tunnel's
// rewriter dropped, by direction and reason, and the time it adds; a
// tunnel with nothing dropped says so.
func TestPeersShowRewriterDrops(t *testing.T) {
	e, b := loggedIn(t)
	e.node.status.Peers = append(e.node.status.Peers, control.Peer{Index: 9, Name: "carol", Rewrite: []control.DirectionCounters{
		{Direction: "inbound", Dropped: []control.ReasonCount{{Reason: "sip_flood"}}},
	}})
	e.node.status.Peers[0].Rewrite = []control.DirectionCounters{
		{Direction: "outbound", Dropped: []control.ReasonCount{{Reason: "sip_flood"}}},
		{Direction: "inbound", Dropped: []control.ReasonCount{{Reason: "sip_flood", Count: 1200}, {Reason: "sip_refused", Count: 3}},
			SIPRefused: []control.ReasonCount{{Reason: "bad-content-length", Count: 3}},
			Latency:    &control.RewriterLatency{Sampled: 10, P50Ns: 450, P99Ns: 1900}},
	}
	w := b.do("GET", "/peers", nil)
	body := w.Body.String()
	for _, want := range []string{
		"inbound sip_flood 1200, inbound sip_refused 3 (bad-content-length 3)",
		"inbound p50 450ns p99 1.9µs per packet",
		`<td class="dropped">nothing</td>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /peers lacks %q:\n%s", want, body)
		}
	}
}
