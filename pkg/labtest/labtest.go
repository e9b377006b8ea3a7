// Package labtest adapts pkg/lab to tests: it decides whether a lab test can
// run here (root, tools), creates a Lab whose Close is registered with
// t.Cleanup, and routes the lab's log into the test log.
//
// It is separate from pkg/lab so that the lab itself stays usable from a
// normal program (cmd/peerlab), which must not import testing.
package labtest

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
)

// RootMessage is the reason given when a lab test cannot run.
const RootMessage = "lab test needs root and network namespaces: run `sudo make test`"

// RequireRoot skips the test unless it runs as root. Under CI (env CI set to
// anything) a lab test that cannot run is a failure, not a skip.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, RootMessage)
	}
}

// RequireTools skips the test (fails it under CI) unless every tool is in
// PATH (or, given as an absolute path, exists there), e.g.
// RequireTools(t, "baresip", "sox").
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		skipOrFail(t, toolsMessage(missing))
	}
}

// toolPackages names the Debian package of each tool a lab test asks for;
// scripts/install-deps.sh (make deps, and so make test) installs them all.
var toolPackages = map[string]string{
	"baresip":         "baresip",
	"busybox":         "busybox",
	"curl":            "curl",
	"ip":              "iproute2",
	"kamailio":        "kamailio",
	"nft":             "nftables",
	"nsenter":         "util-linux",
	"ping":            "iputils-ping",
	"rtpengine":       "rtpengine-daemon",
	"sipp":            "sip-tester",
	"sox":             "sox",
	"ss":              "iproute2",
	"systemd-analyze": "systemd",
	"tcpdump":         "tcpdump",
	"wg":              "wireguard-tools",
	"/bin/kill":       "procps",
}

// toolsMessage says which tools are missing, which packages hold them, and
// how to install them.
func toolsMessage(missing []string) string {
	var named, pkgs []string
	for _, tool := range missing {
		pkg, ok := toolPackages[tool]
		if !ok {
			named = append(named, tool)
			continue
		}
		named = append(named, tool+" (package "+pkg+")")
		if !slices.Contains(pkgs, pkg) {
			pkgs = append(pkgs, pkg)
		}
	}
	msg := "lab test needs " + strings.Join(named, ", ")
	if len(pkgs) == 0 {
		return msg + ": install it and put it in PATH"
	}
	return msg + ": apt-get install " + strings.Join(pkgs, " ") +
		", or sudo make deps, which installs everything the tests use"
}

func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// New checks RequireRoot and returns a fresh Lab logging to the test log.
// Its Close runs in t.Cleanup; if the test failed, the tail of every process
// log is written to the test log first.
func New(t testing.TB) *lab.Lab {
	t.Helper()
	RequireRoot(t)
	w := &testWriter{t: t}
	l, err := lab.New(slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("lab.New: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			var buf bytes.Buffer
			l.DumpLogs(&buf, 40)
			t.Logf("process logs (lab dir %s):\n%s", l.Dir(), buf.String())
		}
		if err := l.Close(); err != nil {
			t.Errorf("closing lab: %v", err)
		}
		w.stop()
	})
	return l
}

// Logger returns a slog.Logger writing into the test log until the test's
// cleanup ends (later records are dropped: t.Log would panic).
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testWriter forwards log lines to t.Log until stopped. Goroutines of the
// lab (a phone's control reader) may log after the test ends, which t.Log
// does not allow.
type testWriter struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimSuffix(string(b), "\n"))
	}
	return len(b), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// Serve runs a service's Run in the background for the rest of the test.
// The returned stop (also run at cleanup) cancels it and fails the test if
// Run returns an error or does not return within 10 s.
func Serve(t testing.TB, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run = %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return within 10 s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// PhonePort is the smallest Pi of a phone-port service test: the Pi with
// its phone port eth0 (10.0.1.2/30) cabled to a phone (10.0.1.1/30), and
// its uplink wan0 (198.51.100.1/24) cabled to a host Up (198.51.100.2/24)
// that routes 10.0.1.0/30 through the Pi, so a service that answers on
// the uplink would be reachable from Up.
type PhonePort struct {
	Pi, Phone, Up *lab.Host
}

// NewPhonePort builds a PhonePort in l.
func NewPhonePort(t testing.TB, l *lab.Lab) *PhonePort {
	t.Helper()
	var p PhonePort
	for _, h := range []struct {
		h    **lab.Host
		name string
	}{{&p.Pi, "pi"}, {&p.Phone, "phone"}, {&p.Up, "up"}} {
		var err error
		if *h.h, err = l.Host(h.name); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Veth(p.Pi, "eth0", p.Phone, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(p.Pi, "wan0", p.Up, "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		h         *lab.Host
		dev, cidr string
	}{
		{p.Pi, "eth0", "10.0.1.2/30"}, {p.Phone, "eth0", "10.0.1.1/30"},
		{p.Pi, "wan0", "198.51.100.1/24"}, {p.Up, "eth0", "198.51.100.2/24"},
	} {
		if err := a.h.Addr(a.dev, a.cidr); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Up.Route("10.0.1.0/30", "via", "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	return &p
}
