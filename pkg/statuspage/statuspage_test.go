package statuspage

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/control"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sample() Snapshot {
	hs := now.Add(-42 * time.Second)
	return Snapshot{
		Status: control.Status{
			Name:      "kitchen",
			PublicKey: "Y9//y9jiDSs1pIpWEtgYbJYWCjgZwXRRhhcrL4bDhzc=",
			Ready:     true,
			Lines:     []int{1, 2},
			Peers: []control.Peer{
				{Index: 2, Name: "grandma", Up: true, Online: true, Path: "direct", Endpoint: "198.51.100.7:51820", LastHandshake: &hs, RxBytes: 1536, TxBytes: 10},
				{Index: 3, Name: "office", Error: "creating namespace pl-3: operation not permitted"},
			},
		},
		Phones: []control.Phone{{Line: 1, MAC: "00:0b:82:01:02:03", Vendor: "Grandstream", Model: "HT801", Addr: netip.MustParseAddr("10.0.1.1"), LastSeen: now.Add(-3 * time.Minute)}},
	}
}

func get(t *testing.T, h http.Handler, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func fixed(s Snapshot) Source {
	return func(context.Context) (Snapshot, error) { return s, nil }
}

func TestPageSIP(t *testing.T) {
	s := sample()
	s.SIP = &control.Lines{
		Lines: []control.Line{{Line: 1, Label: "hall", URIs: []string{"sip:1@kitchen", "sip:hall@kitchen"}, Registration: &control.Registration{}}, {Line: 2, URIs: []string{"sip:2@kitchen"}}},
		Peers: []control.PeerLine{{Peer: 2, Name: "grandma", Line: 1, Label: "sofa", Short: "2*1", Dial: "grandma.1", URI: "sip:1@grandma", Address: netip.MustParseAddr("10.2.1.1")}},
	}
	_, body := get(t, New(fixed(s), Options{Now: func() time.Time { return now }}), "/")
	for _, want := range []string{"<h2>Dialling by number and name</h2>", "<code>sip:1@kitchen</code>, <code>sip:hall@kitchen</code>", "<td>yes</td>", "<td>no</td>", "<code>2*1</code>", "<td>1 · sofa</td>", "<code>grandma.1</code>", "<code>sip:1@grandma</code>"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if _, body := get(t, New(fixed(sample()), Options{}), "/"); strings.Contains(body, "Dialling by") || strings.Contains(body, "Outside lines") {
		t.Error("SIP or trunk section shown with the service off and no trunks")
	}
	s.Trunks = []control.Trunk{{Name: "sipgate", Prefix: "0", Lines: []int{1, 2}, State: "registered", Status: "registered"}}
	_, body = get(t, New(fixed(s), Options{Now: func() time.Time { return now }}), "/")
	for _, want := range []string{"<h2>Outside lines</h2>", "<td>sipgate</td>", "<td><code>0</code></td>", "<td>1, 2</td>", "<td>registered</td>"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestPage(t *testing.T) {
	h := New(fixed(sample()), Options{Now: func() time.Time { return now }})
	res, body := get(t, h, "/")
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="10">`,
		"<h1>kitchen</h1>", `<span class="ok">ready</span>`, "Y9//y9jiDSs1pIpWEtgYbJYWCjgZwXRRhhcrL4bDhzc=",
		"1, 2", "grandma", "online", "198.51.100.7:51820", "42 s ago", "1.5 KiB", "10 B",
		"error: creating namespace pl-3: operation not permitted",
		"00:0b:82:01:02:03", "Grandstream HT801", "10.0.1.1", "3 min ago",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "boot-config-error") {
		t.Error("page shows a boot-config box without a problem")
	}
	if strings.Contains(body, "<script") {
		t.Error("page has a script")
	}
}

// Names come from peers and from phones' DHCP requests: hostile input.
func TestPageEscapes(t *testing.T) {
	s := sample()
	s.Name = `<script>alert(1)</script>`
	s.Peers[0].Name = `"><img src=x onerror=alert(1)>`
	s.Phones[0].Model = `</td><script>x()</script>`
	s.BootConfigError = `line 1: name: "<b>" has the character '<'`
	_, body := get(t, New(fixed(s), Options{}), "/")
	for _, bad := range []string{"<script>alert", "<img src=x", "<script>x()", "<b>"} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains %q unescaped", bad)
		}
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("hostile name not shown escaped")
	}
}

func TestBootConfigError(t *testing.T) {
	errFile := filepath.Join(t.TempDir(), "boot-config-error")
	const problem = "/boot/firmware/peerline.txt is wrong; nothing in it was applied.\nline 7: wifi_password: 5 characters long; a WPA2 password has 8 to 63. Fix: write the Wi-Fi password"
	if err := os.WriteFile(errFile, []byte(problem+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  Source
		code int
	}{
		{"daemon fine", fixed(sample()), http.StatusOK},
		{"daemon has no status", func(context.Context) (Snapshot, error) { return Snapshot{}, errors.New("supervisor busy") }, http.StatusServiceUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := New(tc.src, Options{BootConfigErrorFile: errFile})
			res, body := get(t, h, "/")
			if res.StatusCode != tc.code {
				t.Errorf("GET / = %d, want %d", res.StatusCode, tc.code)
			}
			if !strings.Contains(body, `id="boot-config-error"`) || !strings.Contains(body, "line 7: wifi_password") || !strings.Contains(body, "Fix: write") {
				t.Errorf("page does not show the boot-config problem:\n%s", body)
			}
			_, body = get(t, h, "/status.json")
			var got struct {
				BootConfigError string `json:"boot_config_error"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil || got.BootConfigError != problem {
				t.Errorf("status.json boot_config_error = %q, %v; want the file's text", got.BootConfigError, err)
			}
		})
	}
}

func TestStatusJSON(t *testing.T) {
	h := New(fixed(sample()), Options{})
	res, body := get(t, h, "/status.json")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status.json = %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	// The status fields sit at the top level, beside "phones", as in
	// `peerline status`.
	for _, k := range []string{"name", "public_key", "ready", "lines", "peers", "phones"} {
		if _, ok := m[k]; !ok {
			t.Errorf("status.json lacks %q: %s", k, body)
		}
	}
	var back Snapshot
	if err := json.Unmarshal([]byte(body), &back); err != nil {
		t.Fatal(err)
	}
	if back.Name != "kitchen" || len(back.Peers) != 2 || back.Peers[0].Name != "grandma" || len(back.Phones) != 1 || back.Phones[0].MAC != "00:0b:82:01:02:03" {
		t.Errorf("status.json round trip = %+v", back)
	}
	// Empty lists are [] not null, so programs need no special case.
	_, body = get(t, New(fixed(Snapshot{}), Options{}), "/status.json")
	for _, k := range []string{`"peers": []`, `"phones": []`, `"lines": []`} {
		if !strings.Contains(body, k) {
			t.Errorf("empty status.json lacks %s:\n%s", k, body)
		}
	}
}

func TestRoutes(t *testing.T) {
	h := New(fixed(sample()), Options{})
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/", 200},
		{http.MethodHead, "/", 200},
		{http.MethodGet, "/status.json", 200},
		{http.MethodGet, "/other", 404},
		{http.MethodPost, "/", 405},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.code {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, rec.Code, tc.code)
		}
		if tc.method == http.MethodHead && rec.Body.Len() != 0 {
			t.Errorf("HEAD / has a body")
		}
	}
}

// A Source that hangs must not hang the page.
func TestSourceTimeout(t *testing.T) {
	slow := func(ctx context.Context) (Snapshot, error) {
		<-ctx.Done()
		return Snapshot{}, ctx.Err()
	}
	h := New(slow, Options{Timeout: 50 * time.Millisecond})
	start := time.Now()
	res, body := get(t, h, "/")
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "not available") {
		t.Errorf("GET / with a hung source = %d", res.StatusCode)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("GET / took %v with a 50ms timeout", d)
	}
}

func TestAgo(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{5 * time.Second, "5 s ago"}, {90 * time.Second, "1 min ago"}, {3 * time.Hour, "3 h ago"}, {72 * time.Hour, "3 days ago"}, {-time.Second, "just now"}} {
		if got := Ago(now, now.Add(-tc.d)); got != tc.want {
			t.Errorf("ago(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	if got := Ago(now, (*time.Time)(nil)); got != "never" {
		t.Errorf("ago(nil) = %q", got)
	}
}
