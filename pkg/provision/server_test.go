package provision

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakePhones is a DHCP binding table and the kernel's neighbour table of
// the phone port.
type fakePhones struct {
	mu       sync.Mutex
	bound    map[netip.Addr]binding
	neigh    map[netip.Addr]net.HardwareAddr
	neighErr error
	uas      map[int]string
}

type binding struct {
	mac  net.HardwareAddr
	line int
}

func newFakePhones() *fakePhones {
	return &fakePhones{
		bound: map[netip.Addr]binding{
			netip.MustParseAddr("10.0.1.1"): {gsMAC, 1},
			netip.MustParseAddr("10.0.2.1"): {ylMAC, 2},
		},
		neigh: map[netip.Addr]net.HardwareAddr{
			netip.MustParseAddr("10.0.1.1"): gsMAC,
			netip.MustParseAddr("10.0.2.1"): ylMAC,
		},
		uas: map[int]string{},
	}
}

func (f *fakePhones) Neighbor(_ context.Context, a netip.Addr) (net.HardwareAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.neigh[a], f.neighErr
}

func (f *fakePhones) LineOf(_ context.Context, a netip.Addr) (net.HardwareAddr, int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.bound[a]
	return b.mac, b.line, ok
}

func (f *fakePhones) NoteUserAgent(line int, ua string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.uas[line] = ua
}

func newTestServer(t *testing.T, phones *fakePhones, dirErr error) *Server {
	t.Helper()
	extra := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "status page") })
	s, err := NewServer(Options{
		Port: "eth0",
		Directory: func(context.Context) (Directory, error) {
			return exampleDir(), dirErr
		},
		Phones:   phones,
		Neighbor: phones.Neighbor,
		Extra:    extra,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServe(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		from     string
		path     string
		want     int
		contains []string
	}{
		{"grandstream own file", "GET", "10.0.1.1:4000", "/cfg000b82123456.xml", 200, []string{"<mac>000b82123456</mac>", "<P3>alice line 1</P3>"}},
		{"grandstream legacy binary name", "GET", "10.0.1.1:4000", "/cfg000B82123456", 404, nil},
		{"grandstream legacy binary name, not handed to extra", "GET", "10.0.1.1:4000", "//cfg000b82123456", 404, nil},
		{"grandstream own file, two slashes", "GET", "10.0.1.1:4000", "//cfg000b82123456.xml", 200, []string{"<P30>10.0.1.2</P30>"}},
		{"grandstream own file, three slashes, upper case", "GET", "10.0.1.1:4000", "///CFG000B82123456.XML", 200, []string{"<mac>000b82123456</mac>"}},
		{"yealink own file, two slashes", "GET", "10.0.2.1:4000", "//805ec0123456.cfg", 200, []string{"account.1.enable = 1"}},
		{"another phone's file, two slashes", "GET", "10.0.1.1:4000", "//805ec0123456.cfg", 403, nil},
		{"phonebook, two slashes", "GET", "10.0.2.1:4000", "//phonebook/yealink.xml", 200, []string{"<Telephone>10.9.1.1</Telephone>"}},
		{"yealink own file", "GET", "10.0.2.1:4000", "/805EC0123456.cfg", 200, []string{"#!version:1.0.0.1\n", "account.1.display_name = alice line 2"}},
		{"HEAD", "HEAD", "10.0.2.1:4000", "/805ec0123456.cfg", 200, nil},
		{"another phone's file", "GET", "10.0.1.1:4000", "/805ec0123456.cfg", 403, nil},
		{"another phone's file, same vendor form", "GET", "10.0.2.1:4000", "/cfg000b82123456.xml", 403, nil},
		{"unknown source", "GET", "10.0.3.1:4000", "/cfg000b82123456.xml", 403, nil},
		{"unknown source, phonebook", "GET", "192.168.1.5:4000", "/phonebook/yealink.xml", 403, nil},
		{"IPv4-mapped source", "GET", "[::ffff:10.0.1.1]:4000", "/cfg000b82123456.xml", 200, nil},
		{"yealink common", "GET", "10.0.2.1:4000", "/y000000000053.cfg", 200, []string{"#!version:1.0.0.1\n"}},
		{"phonebook of line 1", "GET", "10.0.1.1:4000", "/phonebook/grandstream/phonebook.xml", 200, []string{"<LastName>alice - line 2</LastName>", "<phonenumber>10.7.2.1</phonenumber>"}},
		{"phonebook of line 2", "GET", "10.0.2.1:4000", "/phonebook/yealink.xml", 200, []string{"<Name>alice - line 1</Name>", "<Telephone>10.9.1.1</Telephone>"}},
		{"status page", "GET", "10.0.1.1:4000", "/", 200, []string{"status page"}},
		{"grandstream fallback goes to extra", "GET", "10.0.1.1:4000", "/cfg.xml", 200, []string{"status page"}},
		{"POST to a config", "POST", "10.0.1.1:4000", "/cfg000b82123456.xml", 405, nil},
		{"long path", "GET", "10.0.1.1:4000", "/" + strings.Repeat("x", 200), 414, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, newFakePhones(), nil)
			r := httptest.NewRequest(tt.method, "http://10.0.1.2"+tt.path, nil)
			r.RemoteAddr = tt.from
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("%s %s from %s = %d, want %d; body %q", tt.method, tt.path, tt.from, w.Code, tt.want, w.Body.String())
			}
			for _, c := range tt.contains {
				if !strings.Contains(w.Body.String(), c) {
					t.Errorf("body lacks %q:\n%s", c, w.Body.String())
				}
			}
			if w.Code == 403 && strings.Contains(w.Body.String(), "alice") {
				t.Errorf("a refusal leaked content: %q", w.Body.String())
			}
		})
	}
}

func TestServeNoExtra(t *testing.T) {
	s, err := NewServer(Options{Port: "eth0", Directory: func(context.Context) (Directory, error) { return exampleDir(), nil }, Phones: newFakePhones()})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	if w.Code != 404 {
		t.Errorf("GET / without Extra = %d, want 404", w.Code)
	}
}

func TestServeDirectoryError(t *testing.T) {
	s := newTestServer(t, newFakePhones(), errors.New("peer table unavailable"))
	r := httptest.NewRequest("GET", "/phonebook/yealink.xml", nil)
	r.RemoteAddr = "10.0.2.1:4000"
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	if w.Code != 500 || strings.Contains(w.Body.String(), "peer table") {
		t.Errorf("directory error: %d %q, want 500 without internals", w.Code, w.Body.String())
	}
}

func TestUserAgentRecorded(t *testing.T) {
	phones := newFakePhones()
	s := newTestServer(t, phones, nil)
	for _, c := range []struct{ from, path, ua string }{
		{"10.0.2.1:1", "/y000000000053.cfg", "Yealink SIP-T19P_E2 53.84.0.125 80:5e:c0:12:34:56"},
		{"10.0.1.1:1", "/cfg000b82123456.xml", "Grandstream Model HW GXP1610 SW 1.0.7.13 DevId 000b82123456\r\nX: y"},
		{"10.0.9.1:1", "/cfg000b82123456.xml", "stranger"},
	} {
		r := httptest.NewRequest("GET", c.path, nil)
		r.RemoteAddr = c.from
		r.Header.Set("User-Agent", c.ua)
		s.Handler().ServeHTTP(httptest.NewRecorder(), r)
	}
	want := map[int]string{
		2: "Yealink SIP-T19P_E2 53.84.0.125 80:5e:c0:12:34:56",
		1: "Grandstream Model HW GXP1610 SW 1.0.7.13 DevId 000b82123456X: y",
	}
	if len(phones.uas) != len(want) {
		t.Errorf("user agents = %v, want %v", phones.uas, want)
	}
	for line, ua := range want {
		if phones.uas[line] != ua {
			t.Errorf("line %d UA = %q, want %q", line, phones.uas[line], ua)
		}
	}
}

func TestNewServerNeedsPort(t *testing.T) {
	_, err := NewServer(Options{Directory: func(context.Context) (Directory, error) { return Directory{}, nil }, Phones: newFakePhones()})
	if err == nil || !strings.Contains(err.Error(), "Port") {
		t.Errorf("NewServer without Port = %v, want an error naming Port", err)
	}
	if _, err := NewServer(Options{Port: "eth0"}); err == nil {
		t.Error("NewServer without Directory and Phones succeeded")
	}
}

// TestRun serves on a loopback listener through the Listen seam and stops
// when the context ends, leaving no goroutines behind.
func TestRun(t *testing.T) {
	before := runtime.NumGoroutine()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	phones := newFakePhones()
	phones.bound[netip.MustParseAddr("127.0.0.1")] = binding{gsMAC, 1}
	phones.neigh[netip.MustParseAddr("127.0.0.1")] = gsMAC
	s, err := NewServer(Options{
		Directory: func(context.Context) (Directory, error) { return exampleDir(), nil },
		Phones:    phones,
		Listen:    func(string, string) (net.Listener, error) { return ln, nil },
		Neighbor:  phones.Neighbor,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + ln.Addr().String() + "/cfg000b82123456.xml")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<P271>1</P271>") {
		t.Errorf("GET own file = %d %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/xml; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	client.CloseIdleConnections()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("goroutines: %d before, %d after Run returned", before, n)
	}
}

func TestRunListenError(t *testing.T) {
	s, err := NewServer(Options{
		Port:      "eth0",
		Directory: func(context.Context) (Directory, error) { return exampleDir(), nil },
		Phones:    newFakePhones(),
		Listen:    func(string, string) (net.Listener, error) { return nil, errors.New("address in use") },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "address in use") {
		t.Errorf("Run = %v, want the listen error", err)
	}
}

// TestRunRequestTargets sends request lines as phones write them to a real
// listener: net/http must hand the path to the handler with its leading
// slashes intact (no ServeMux cleaning or redirect in between).
func TestRunRequestTargets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	phones := newFakePhones()
	phones.bound[netip.MustParseAddr("127.0.0.1")] = binding{gsMAC, 1}
	phones.neigh[netip.MustParseAddr("127.0.0.1")] = gsMAC
	s, err := NewServer(Options{
		Directory: func(context.Context) (Directory, error) { return exampleDir(), nil },
		Phones:    phones,
		Listen:    func(string, string) (net.Listener, error) { return ln, nil },
		Neighbor:  phones.Neighbor,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	for _, tt := range []struct {
		target string
		want   string
	}{
		{"/cfg000b82123456.xml", "HTTP/1.1 200 OK"},
		{"//cfg000b82123456.xml", "HTTP/1.1 200 OK"},
		{"///cfg000b82123456.xml", "HTTP/1.1 200 OK"},
		{"//CFG000B82123456.xml", "HTTP/1.1 200 OK"},
		{"/cfg000b82123456", "HTTP/1.1 404 Not Found"},
		{"//cfg000b82123456", "HTTP/1.1 404 Not Found"},
		{"//805ec0123456.cfg", "HTTP/1.1 403 Forbidden"},
	} {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET "+tt.target+" HTTP/1.1\r\nHost: 10.0.1.2\r\nConnection: close\r\n\r\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if got := strings.TrimSpace(line); got != tt.want || err != nil {
			t.Errorf("GET %s: status line %q, %v; want %q", tt.target, got, err, tt.want)
		}
	}
}

// TestServeNeighbor: the source address must be used by the MAC it is
// leased to (issue 13 item 7); a device that gives itself a phone's
// address gets nothing, and its User-Agent is not recorded.
func TestServeNeighbor(t *testing.T) {
	other := mustMAC("02:00:00:00:00:66")
	tests := []struct {
		name  string
		neigh net.HardwareAddr // for 10.0.2.1; nil: no entry
		err   error
		path  string
		want  int
	}{
		{"lease holder", ylMAC, nil, "/805ec0123456.cfg", 200},
		{"impostor, own file of the address", other, nil, "/805ec0123456.cfg", 403},
		{"impostor, phonebook", other, nil, "/phonebook/yealink.xml", 403},
		{"impostor, common file", other, nil, "/y000000000031.cfg", 403},
		{"impostor, by its own MAC", other, nil, "/020000000066.cfg", 403},
		{"no neighbour entry", nil, nil, "/805ec0123456.cfg", 403},
		{"neighbour table unreadable", ylMAC, errors.New("netlink: permission denied"), "/805ec0123456.cfg", 403},
		{"not provisioning: status page", other, nil, "/", 200},
		{"legacy name: 404 for anyone", other, nil, "/cfg805ec0123456", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phones := newFakePhones()
			phones.neigh[netip.MustParseAddr("10.0.2.1")] = tt.neigh
			phones.neighErr = tt.err
			s := newTestServer(t, phones, nil)
			r := httptest.NewRequest("GET", tt.path, nil)
			r.RemoteAddr = "10.0.2.1:4000"
			r.Header.Set("User-Agent", "Yealink SIP-T19P 31.72.0.75")
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("GET %s from 10.0.2.1 with neighbour %v = %d, want %d", tt.path, tt.neigh, w.Code, tt.want)
			}
			if w.Code == 403 && strings.Contains(w.Body.String(), "alice") {
				t.Errorf("a refusal leaked content: %q", w.Body.String())
			}
			if _, noted := phones.uas[2]; noted != (tt.want == 200 && strings.HasSuffix(tt.path, ".cfg")) {
				t.Errorf("User-Agent recorded: %v", noted)
			}
		})
	}
}
