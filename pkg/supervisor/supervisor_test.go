package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/firewall"
	"github.com/peerline/peerline/pkg/netsetup/netsetuptest"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/wgmux"
	"github.com/peerline/peerline/pkg/wgtunnel"
)

// fakeTunnels stands in for wireguard-go: starting a tunnel makes its TUN
// appear in the Recorder's namespace, as the real one does in the kernel.
type fakeTunnels struct {
	rec *netsetuptest.Recorder

	mu      sync.Mutex
	started []string
	running map[string]*fakeTunnel
	failFor string
}

type fakeTunnel struct {
	f   *fakeTunnels
	cfg wgtunnel.Config
}

func (t *fakeTunnel) Status() (wgtunnel.Status, error) {
	return wgtunnel.Status{Endpoint: t.cfg.Peer.Endpoint.String()}, nil
}

// count is how many tunnels were started.
func (f *fakeTunnels) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.started)
}

func (t *fakeTunnel) SetEndpoint(string) error { return nil }
func (t *fakeTunnel) StartKeepalive() error    { return nil }

func (t *fakeTunnel) Close() error {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	if t.f.running[t.cfg.Name] == t {
		delete(t.f.running, t.cfg.Name)
		t.f.rec.RemoveLink(t.cfg.Namespace, t.cfg.Name)
	}
	return nil
}

func (f *fakeTunnels) start(cfg wgtunnel.Config, _ *slog.Logger) (Tunnel, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cfg.Name == f.failFor {
		return nil, errors.New("UDP port in use")
	}
	if err := f.rec.AddLink(cfg.Namespace, cfg.Name); err != nil {
		return nil, err
	}
	f.started = append(f.started, fmt.Sprintf("%s in %s shared=%v endpoint %s", cfg.Name, cfg.Namespace, cfg.Bind != nil, cfg.Peer.Endpoint))
	t := &fakeTunnel{f: f, cfg: cfg}
	f.running[cfg.Name] = t
	return t, nil
}

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	dir := t.TempDir()
	k1, _ := nodekey.Generate()
	k2, _ := nodekey.Generate()
	c := &config.Config{
		Name:      "bob",
		Prefix:    "pl",
		StateDir:  filepath.Join(dir, "state"),
		RunDir:    filepath.Join(dir, "run"),
		PhonePort: "eth0",
		Lines:     []int{1, 2},
		Peers: []config.Peer{
			{Index: 7, Name: "alice", PublicKey: k1.Public(), Endpoint: "198.51.100.7:51824"},
			{Index: 9, Name: "carol", PublicKey: k2.Public(), Endpoint: "198.51.100.9:51820"},
		},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// What pkg/node does before it makes the Supervisor.
	for _, d := range []string{c.StateDir, c.RunDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// testKey is the node's key, which pkg/node loads and hands the Supervisor.
var testKey, _ = nodekey.Generate()

// harness runs a Supervisor in the background and lets a test drive its
// loop step by step.
type harness struct {
	t       *testing.T
	rec     *netsetuptest.Recorder
	tun     *fakeTunnels
	fw      *fakeFirewall
	sup     *Supervisor
	started time.Time
	cancel  context.CancelFunc
	done    chan error
	reload  chan *config.Config
}

// fakeFirewall records each load in the transcript, by its namespace, so
// the test sees where in the order of steps it came, and keeps the tables
// for List; a real load would exec nft in this test's own namespace.
type fakeFirewall struct {
	t   *testing.T
	rec *netsetuptest.Recorder

	mu      sync.Mutex
	tables  map[string]string
	loads   int
	lists   int
	changes int
	// gen stands for the kernel's ruleset generation, one for all
	// namespaces: it moves on every change anywhere, which is more often
	// than the kernel's per-namespace one, never less.
	gen uint32
	// failNode makes loads of the node's table fail.
	failNode atomic.Bool
}

func (f *fakeFirewall) Load(ns string, r firewall.Ruleset) error {
	rules := r.Rules()
	if !strings.Contains(rules, "policy drop") {
		f.t.Errorf("firewall for %q does not drop by default:\n%s", ns, rules)
	}
	if ns == "" && f.failNode.Load() {
		return errors.New("nft: Operation not permitted")
	}
	if err := f.rec.Do(ns, func() error { return nil }); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tables[ns] = rules
	f.loads++
	f.gen++
	return nil
}

// Change applies the element lines of NodeChange's script ("add|delete
// element inet peerline SET { ELEM }") to the "elements = { ... }" line of
// that set in the table, all or nothing as the kernel does: deleting a
// missing element or adding to a table without the set fails the whole
// change.
func (f *fakeFirewall) Change(ns string, from, to firewall.Node) error {
	// As the Loader, refuse more than a change of peers before sending.
	script, ok := firewall.NodeChange(from, to)
	if !ok {
		return firewall.ErrNotPeersOnly
	}
	if ns == "" && f.failNode.Load() {
		return errors.New("netlink: operation not permitted")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	table, ok := f.tables[ns]
	if !ok {
		return errors.New("nft: No such file or directory")
	}
	for line := range strings.Lines(script) {
		var verb, set, elem string
		if _, err := fmt.Sscanf(line, "%s element inet peerline %s { %q . ", &verb, &set, &elem); err != nil {
			return fmt.Errorf("fake nft: %q: %w", line, err)
		}
		elem = strings.TrimSuffix(strings.TrimSpace(line[strings.Index(line, "{")+1:]), "}")
		elem = strings.TrimSpace(elem)
		start := strings.Index(table, "\tset "+set+" {\n")
		if start < 0 {
			return errors.New("nft: No such file or directory")
		}
		end := start + strings.Index(table[start:], "\t}\n")
		block := table[start:end]
		var elems []string
		if k := strings.Index(block, "elements = { "); k >= 0 {
			list := block[k+len("elements = { "):]
			elems = strings.Split(list[:strings.Index(list, " }")], ", ")
			block = block[:strings.LastIndex(block[:k], "\n")+1]
		}
		switch k := slices.Index(elems, elem); {
		case verb == "add" && k < 0:
			elems = append(elems, elem)
		case verb == "delete" && k >= 0:
			elems = slices.Delete(elems, k, k+1)
		case verb == "delete":
			return errors.New("nft: Could not process rule: No such file or directory")
		}
		if len(elems) > 0 {
			block += "\t\telements = { " + strings.Join(elems, ", ") + " }\n"
		}
		table = table[:start] + block + table[end:]
	}
	f.tables[ns] = table
	f.changes++
	f.gen++
	return nil
}

func (f *fakeFirewall) Generation(string) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen, nil
}

func (f *fakeFirewall) List(ns string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	r, ok := f.tables[ns]
	if !ok {
		return "", firewall.ErrNoTable
	}
	return r, nil
}

func (f *fakeFirewall) Delete(ns string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tables, ns)
	f.gen++
	return nil
}

// flush stands for `nft flush table inet peerline` in ns.
func (f *fakeFirewall) flush(ns string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tables[ns] = "flushed"
	f.gen++
}

func (f *fakeFirewall) table(ns string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tables[ns]
}

func newHarness(t *testing.T) *harness {
	rec := netsetuptest.NewRecorder()
	if err := rec.AddLink("", "eth0"); err != nil {
		t.Fatal(err)
	}
	rec.Take()
	return &harness{t: t, rec: rec, tun: &fakeTunnels{rec: rec, running: map[string]*fakeTunnel{}},
		fw: &fakeFirewall{t: t, rec: rec, tables: map[string]string{}}}
}

func (h *harness) start(cfg *config.Config) {
	h.t.Helper()
	s := New(cfg, Options{Net: h.rec, StartTunnel: h.tun.start, Firewall: h.fw, Key: testKey, ListenTunnels: loopbackMux, Log: testLog(h.t), CheckInterval: time.Hour, StatusInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	h.sup, h.cancel, h.done, h.reload = s, cancel, make(chan error, 1), make(chan *config.Config)
	h.started = time.Now().UTC()
	go func() { h.done <- s.Run(ctx, h.reload) }()
	h.waitReady(cfg)
}

// waitReady waits for a status of this run, not one a crashed run left.
func (h *harness) waitReady(cfg *config.Config) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := ReadStatus(cfg.RunDir); err == nil && st.Ready && !st.Updated.Before(h.started) {
			return
		}
		select {
		case err := <-h.done:
			h.t.Fatalf("Run returned early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	h.t.Fatal("supervisor not ready after 5 s")
}

func (h *harness) stop() {
	h.t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Fatalf("Run() = %v, want nil on cancel", err)
		}
	case <-time.After(5 * time.Second):
		h.t.Fatal("Run did not return after cancel")
	}
}

// crash ends Run without teardown, as kill -9 does: what the kernel holds
// stays, the TUNs go with the process.
func (h *harness) crash(cfg *config.Config) {
	h.t.Helper()
	h.sup.crashed = true
	h.stop()
	h.tun.mu.Lock()
	for name, tn := range h.tun.running {
		h.rec.RemoveLink(tn.cfg.Namespace, name)
		delete(h.tun.running, name)
	}
	h.tun.mu.Unlock()
}

const bringUp = `do
sysctl net/ipv4/ip_forward=1
link up eth0
addr add eth0 10.0.1.2/30
addr add eth0 10.0.2.2/30
ns add pl-7
do pl-7
sysctl pl-7 net/ipv4/ip_forward=1
sysctl pl-7 net/ipv4/conf/all/rp_filter=0
sysctl pl-7 net/ipv4/conf/default/rp_filter=0
veth add plv7 <-> pl-7/veth0 mtu 1500
addr add plv7 169.254.7.1/30
addr add pl-7/veth0 169.254.7.2/30
link up plv7
link up pl-7/veth0
route add 10.7.0.0/16 via 169.254.7.2 dev plv7
route add pl-7 10.0.0.0/16 via 169.254.7.1 dev veth0
link add pl-7/pl7
link up pl-7/pl7
route add pl-7 10.7.0.0/16 dev pl7
ns add pl-9
do pl-9
sysctl pl-9 net/ipv4/ip_forward=1
sysctl pl-9 net/ipv4/conf/all/rp_filter=0
sysctl pl-9 net/ipv4/conf/default/rp_filter=0
veth add plv9 <-> pl-9/veth0 mtu 1500
addr add plv9 169.254.9.1/30
addr add pl-9/veth0 169.254.9.2/30
link up plv9
link up pl-9/veth0
route add 10.9.0.0/16 via 169.254.9.2 dev plv9
route add pl-9 10.0.0.0/16 via 169.254.9.1 dev veth0
link add pl-9/pl9
link up pl-9/pl9
route add pl-9 10.9.0.0/16 dev pl9`

func TestBringUpAndTeardown(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	h.start(cfg)
	if got := h.rec.Take(); got != bringUp {
		t.Errorf("bring-up transcript:\n%s\nwant:\n%s", got, bringUp)
	}
	wantStarted := []string{
		"pl7 in pl-7 shared=true endpoint 198.51.100.7:51824",
		"pl9 in pl-9 shared=true endpoint 198.51.100.9:51820",
	}
	if got := strings.Join(h.tun.started, "\n"); got != strings.Join(wantStarted, "\n") {
		t.Errorf("tunnels started:\n%s\nwant:\n%s", got, strings.Join(wantStarted, "\n"))
	}
	st, err := ReadStatus(cfg.RunDir)
	if err != nil || len(st.Peers) != 2 || !st.Peers[0].Up || st.Peers[0].Endpoint != "198.51.100.7:51824" {
		t.Errorf("status = %+v, %v", st, err)
	}
	h.stop()
	const teardown = `ns del pl-7
ns del pl-9
addr del eth0 10.0.1.2/30
addr del eth0 10.0.2.2/30`
	if got := h.rec.Take(); got != teardown {
		t.Errorf("teardown transcript:\n%s\nwant:\n%s", got, teardown)
	}
	if got := h.rec.State(); strings.Contains(got, "pl-") || strings.Contains(got, "plv") || strings.Contains(got, "10.0.") {
		t.Errorf("state after teardown still holds peerline's things:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(cfg.RunDir, statusFile)); !os.IsNotExist(err) {
		t.Errorf("status file left after shutdown: %v", err)
	}
}

func TestRestartAfterCrashReconciles(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	h.start(cfg)
	before := h.rec.State()
	h.rec.Take()
	h.crash(cfg)
	h.start(cfg)
	// Only the TUNs died with the process; everything else is found in
	// place, so a restart adds the TUNs and their routes, and loads the
	// firewalls again (the new run cannot know what the old one loaded),
	// the node's first.
	const want = `do
do pl-7
link add pl-7/pl7
link up pl-7/pl7
route add pl-7 10.7.0.0/16 dev pl7
do pl-9
link add pl-9/pl9
link up pl-9/pl9
route add pl-9 10.9.0.0/16 dev pl9`
	got := h.rec.Take()
	// The first sysctl writes are always recorded (the fake cannot know a
	// value it never saw), so drop them before comparing.
	got = dropLines(got, "sysctl")
	if got != want {
		t.Errorf("restart transcript:\n%s\nwant:\n%s", got, want)
	}
	if after := h.rec.State(); after != before {
		t.Errorf("state after restart differs from before the crash:\n%s\nwant:\n%s", after, before)
	}
	h.stop()
}

func TestRestartRemovesWhatConfigDropped(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	h.start(cfg)
	h.crash(cfg)
	h.rec.Take()
	smaller := *cfg
	smaller.Peers = cfg.Peers[:1]
	smaller.Lines = []int{1}
	h.start(&smaller)
	got := dropLines(h.rec.Take(), "sysctl")
	for _, want := range []string{"ns del pl-9", "addr del eth0 10.0.2.2/30"} {
		if !strings.Contains(got, want) {
			t.Errorf("restart with a smaller config did not %q:\n%s", want, got)
		}
	}
	h.stop()
}

func TestReload(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	h.start(cfg)
	h.rec.Take()
	next := *cfg
	next.Peers = []config.Peer{cfg.Peers[0]}
	next.Peers[0].Endpoint = "198.51.100.8:51824"
	next.Lines = []int{1, 3}
	h.reload <- &next
	h.waitReady(&next)
	// Give the loop a moment past the reload it has already taken: the
	// line comes first, then peer 7's namespace and tunnel.
	deadline := time.Now().Add(2 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		got += h.rec.Take()
		if strings.Contains(got, "addr add eth0 10.0.3.2/30") && strings.Contains(got, "ns add pl-7") && h.tun.count() == 3 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, want := range []string{"ns del pl-7", "ns del pl-9", "addr del eth0 10.0.2.2/30", "addr add eth0 10.0.3.2/30", "ns add pl-7"} {
		if !strings.Contains(got, want) {
			t.Errorf("reload transcript lacks %q:\n%s", want, got)
		}
	}
	if n := len(h.tun.started); n != 3 || !strings.Contains(h.tun.started[2], "198.51.100.8:51824") {
		t.Errorf("tunnels started = %q, want peer 7 restarted with its new endpoint", h.tun.started)
	}
	h.stop()
}

func TestFailingPeerIsRetriedAndReported(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	h.tun.failFor = "pl9"
	s := New(cfg, Options{Net: h.rec, StartTunnel: h.tun.start, Firewall: h.fw, Key: testKey, ListenTunnels: loopbackMux, Log: testLog(t), CheckInterval: 10 * time.Millisecond, StatusInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, nil) }()
	var st *Status
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		if st, err = ReadStatus(cfg.RunDir); err == nil && len(st.Peers) == 2 && st.Peers[1].Error != "" {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st == nil || st.Ready || len(st.Peers) != 2 || !strings.Contains(st.Peers[1].Error, "UDP port in use") || !st.Peers[0].Up {
		t.Fatalf("status with a failing peer = %+v; want peer 7 up, peer 9 with its error, not ready", st)
	}
	h.tun.mu.Lock()
	h.tun.failFor = ""
	h.tun.mu.Unlock()
	h.waitReadyFor(cfg, done)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func (h *harness) waitReadyFor(cfg *config.Config, done chan error) {
	h.done = done
	h.started = time.Now().UTC()
	h.waitReady(cfg)
}

func TestCleanupRemovesEveryIndex(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	h.start(cfg)
	h.crash(cfg)
	// A namespace of an index no config mentions any more, and one of
	// another prefix that must survive.
	h.rec.EnsureNamespace("pl-200")
	h.rec.EnsureNamespace("plx-7")
	h.rec.Take()
	if err := Cleanup(cfg, h.rec, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	state := h.rec.State()
	for _, gone := range []string{"pl-7", "pl-9", "pl-200", "plv7", "10.0.1.2"} {
		if strings.Contains(state, gone+"\n") || strings.Contains(state, gone+" ") || strings.Contains(state, gone+"/") {
			t.Errorf("after Cleanup, %s is still there:\n%s", gone, state)
		}
	}
	if !strings.Contains(state, "plx-7") {
		t.Errorf("Cleanup removed another prefix's namespace:\n%s", state)
	}
}

func dropLines(s, prefix string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" && !strings.HasPrefix(l, prefix) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// A namespace deleted behind the daemon's back is rebuilt, firewall first,
// whether or not its tunnel had come up.
func TestVanishedNamespaceIsRebuiltWithFirewall(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	h.tun.failFor = "pl9" // peer 9 has a namespace and rules but no tunnel
	s := New(cfg, Options{Net: h.rec, StartTunnel: h.tun.start, Firewall: h.fw, Key: testKey, ListenTunnels: loopbackMux, Log: testLog(t), CheckInterval: 10 * time.Millisecond, StatusInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, nil) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFor := func(want string) string {
		t.Helper()
		var got string
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			got += h.rec.Take() + "\n"
			if strings.Contains(got, want) {
				return got
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("transcript never showed %q:\n%s", want, got)
		return got
	}
	waitFor("ns add pl-9\ndo pl-9")
	for _, ns := range []string{"pl-7", "pl-9"} {
		if err := h.rec.DeleteNamespace(ns); err != nil {
			t.Fatal(err)
		}
	}
	got := waitFor("ns add pl-9\ndo pl-9")
	if !strings.Contains(got, "ns add pl-7\ndo pl-7") {
		t.Errorf("namespace pl-7 not rebuilt with its firewall first:\n%s", got)
	}
}

func TestRuntimeLines(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	h.start(cfg)
	h.rec.Take()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if err := h.sup.EnsureLine(ctx, 5); err != nil {
		t.Fatalf("EnsureLine(5) = %v", err)
	}
	// The new phone must be reachable from the peers at once: the node's
	// and every peer's firewall take its address.
	if got := h.rec.Take(); got != "addr add eth0 10.0.5.2/30\ndo\ndo pl-7\ndo pl-9" {
		t.Errorf("EnsureLine(5) did %q, want the line's address added and the firewalls reloaded", got)
	}
	for _, ns := range []string{"", "pl-7", "pl-9"} {
		if r := h.fw.table(ns); !strings.Contains(r, "10.0.5.1") {
			t.Errorf("after EnsureLine(5) the firewall in %q does not name 10.0.5.1:\n%s", ns, r)
		}
	}
	if err := h.sup.EnsureLine(ctx, 5); err != nil {
		t.Fatalf("EnsureLine(5) again = %v", err)
	}
	if got := h.rec.Take(); got != "" {
		t.Errorf("EnsureLine(5) again did %q, want nothing", got)
	}
	if err := h.sup.EnsureLine(ctx, 255); err == nil {
		t.Error("EnsureLine(255) succeeded; 255 is no line")
	}
	st, err := h.sup.Status(ctx)
	if err != nil {
		t.Fatalf("Status() = %v", err)
	}
	if want := []int{1, 2, 5}; !slices.Equal(st.Lines, want) {
		t.Errorf("Status().Lines = %v, want %v", st.Lines, want)
	}
	if err := h.sup.RemoveLine(ctx, 1); err == nil || !strings.Contains(err.Error(), "config file") {
		t.Errorf("RemoveLine(1) = %v, want a refusal naming the config file", err)
	}

	// A line added at run time survives a reload of a config that never
	// listed it, and a restart that is told about it.
	next := *cfg
	h.reload <- &next
	h.waitReady(&next)
	if err := h.sup.RemoveLine(ctx, 5); err != nil {
		t.Fatalf("RemoveLine(5) = %v", err)
	}
	if got := h.rec.Take(); !strings.Contains(got, "addr del eth0 10.0.5.2/30") {
		t.Errorf("RemoveLine(5) transcript %q lacks the address removal", got)
	}
	h.stop()

	if _, err := h.sup.Status(ctx); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Status() after Run ended = %v, want ErrNotRunning", err)
	}
}

func TestExtraLinesKeptOnStart(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	s := New(cfg, Options{Net: h.rec, StartTunnel: h.tun.start, Firewall: h.fw, Key: testKey, ListenTunnels: loopbackMux, Log: testLog(t), CheckInterval: time.Hour, StatusInterval: time.Hour, ExtraLines: []int{7}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, nil) }()
	h.started = time.Now().UTC()
	h.done = done
	h.waitReady(cfg)
	if got := h.rec.Take(); !strings.Contains(got, "addr add eth0 10.0.7.2/30") {
		t.Errorf("start transcript lacks the extra line's address:\n%s", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := h.rec.Take(); !strings.Contains(got, "addr del eth0 10.0.7.2/30") {
		t.Errorf("teardown transcript lacks the extra line's address:\n%s", got)
	}
}

// loopbackMux opens the tunnel socket on a free loopback port, so tests
// never take the real 51820.
func loopbackMux(_ int, key nodekey.Key, log *slog.Logger) (*wgmux.Mux, error) {
	return wgmux.Listen("127.0.0.1:0", key, log)
}

// A load is not followed by an nft listing (as slow as the load with 253
// peers): until the generation moves, it alone tells that nothing changed.
func TestFirewallNotListedAfterLoad(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	s := New(cfg, Options{Net: h.rec, StartTunnel: h.tun.start, Firewall: h.fw, Key: testKey, ListenTunnels: loopbackMux, Log: testLog(t), CheckInterval: time.Hour, StatusInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, nil) }()
	h.started, h.done = time.Now().UTC(), done
	h.waitReady(cfg)
	h.fw.mu.Lock()
	loads, lists := h.fw.loads, h.fw.lists
	h.fw.mu.Unlock()
	if loads != 3 || lists != 0 {
		t.Errorf("starting a node with two peers: %d loads, %d listings; want 3 loads (node and peers) and no listing", loads, lists)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A node or peer table flushed (or deleted) behind the daemon's back is
// loaded again at the next check, and torn down with the node.
func TestFirewallRestored(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	s := New(cfg, Options{Net: h.rec, StartTunnel: h.tun.start, Firewall: h.fw, Key: testKey, ListenTunnels: loopbackMux, Log: testLog(t), CheckInterval: 10 * time.Millisecond, StatusInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, nil) }()
	h.started, h.done = time.Now().UTC(), done
	h.waitReady(cfg)
	want := map[string]string{"": h.fw.table(""), "pl-7": h.fw.table("pl-7")}
	for ns, r := range want {
		if !strings.Contains(r, "policy drop") {
			t.Fatalf("firewall in %q after start = %q, want the ruleset", ns, r)
		}
	}
	h.fw.flush("")
	h.fw.flush("pl-7")
	h.fw.Delete("pl-9")
	deadline := time.Now().Add(5 * time.Second)
	for h.fw.table("") != want[""] || h.fw.table("pl-7") != want["pl-7"] || h.fw.table("pl-9") == "" {
		if time.Now().After(deadline) {
			t.Fatalf("firewalls not restored after 5 s of 10 ms checks: node %q, pl-7 %q, pl-9 %q", h.fw.table(""), h.fw.table("pl-7"), h.fw.table("pl-9"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// With nothing changed, a check reads the generation and neither lists
	// nor loads a table.
	// The fake's generation is one for all namespaces, so the restore's
	// own loads move it for the other tables: the checks right after list
	// (or, never listed yet, load) those once. Then they must go quiet.
	quiet := false
	for deadline := time.Now().Add(3 * time.Second); !quiet && time.Now().Before(deadline); {
		h.fw.mu.Lock()
		loads, lists := h.fw.loads, h.fw.lists
		h.fw.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		h.fw.mu.Lock()
		quiet = h.fw.loads == loads && h.fw.lists == lists
		h.fw.mu.Unlock()
	}
	if !quiet {
		t.Error("checks with nothing changed kept loading or listing tables for 3 s; want a 50 ms stretch (five checks) with neither")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r := h.fw.table(""); r != "" {
		t.Errorf("node firewall after teardown = %q, want it removed", r)
	}
}

// Without its node firewall the node brings nothing up: no phone port, no
// peer.
func TestNodeFirewallFailureKeepsNodeClosed(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	fw := &failingFirewall{fakeFirewall: h.fw}
	s := New(cfg, Options{Net: h.rec, StartTunnel: h.tun.start, Firewall: fw, Key: testKey, ListenTunnels: loopbackMux, Log: testLog(t), CheckInterval: 10 * time.Millisecond, StatusInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, nil) }()
	time.Sleep(100 * time.Millisecond)
	if got := h.rec.Take(); strings.Contains(got, "link up") || strings.Contains(got, "ns add") {
		t.Errorf("without its firewall the node did:\n%s\nwant no link up and no namespace", got)
	}
	if st, err := ReadStatus(cfg.RunDir); err != nil || st.Ready {
		t.Errorf("status without the node firewall = %+v, %v; want not ready", st, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type failingFirewall struct{ *fakeFirewall }

func (f *failingFirewall) Load(ns string, r firewall.Ruleset) error {
	if ns == "" {
		return errors.New("netlink: operation not permitted")
	}
	return f.fakeFirewall.Load(ns, r)
}

// A reload that adds a peer builds it while the node table is loaded
// again; if that load fails, the table in force (which does not name the
// new peer, and drops what it does not name) stays, and the next check
// loads the new one.
func TestNodeFirewallReloadFailureKeepsTable(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	h.start(cfg)
	before := h.fw.table("")
	if !strings.Contains(before, `"plv7"`) {
		t.Fatalf("node table after start lacks peer 7's link:\n%s", before)
	}
	// The fake's one generation moved with the peers' loads after the
	// node's; a check takes the node table's again, as the kernel's own
	// per-namespace generation would have stayed.
	h.sup.Do(t.Context(), func() { h.sup.reconcile(0) })
	h.rec.Take()
	h.fw.failNode.Store(true)
	k, _ := nodekey.Generate()
	next := *cfg
	next.Peers = append(slices.Clone(cfg.Peers), config.Peer{Index: 11, Name: "dave", PublicKey: k.Public(), Endpoint: "198.51.100.11:51820"})
	h.reload <- &next
	var got string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && !strings.Contains(got, "route add pl-11 10.11.0.0/16 dev pl11"); {
		got += h.rec.Take()
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(got, "ns add pl-11") {
		t.Errorf("peer 11 not built while the node table was loading:\n%s", got)
	}
	h.sup.Do(t.Context(), func() {}) // the reload is done
	if after := h.fw.table(""); after != before {
		t.Errorf("node table after a failed reload = \n%s\nwant the one in force before:\n%s", after, before)
	}
	h.fw.failNode.Store(false)
	h.sup.Do(t.Context(), func() { h.sup.reconcile(0) })
	if after := h.fw.table(""); !strings.Contains(after, `"plv11"`) {
		t.Errorf("node table after the next check lacks peer 11's link:\n%s", after)
	}
	h.stop()
}

// TestNodeTablePeersChangedInPlace: a peer added or removed while the
// node runs is a change of the node table's set elements, not a reload of
// the table (with 253 peers that took nft about a second), and leaves the
// table exactly as loading the new one whole would.
func TestNodeTablePeersChangedInPlace(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	h.start(cfg)
	counts := func() (loads, changes int) {
		h.fw.mu.Lock()
		defer h.fw.mu.Unlock()
		return h.fw.loads, h.fw.changes
	}
	k, _ := nodekey.Generate()
	added := *cfg
	added.Peers = append(slices.Clone(cfg.Peers), config.Peer{Index: 11, Name: "dave", PublicKey: k.Public(), Endpoint: "198.51.100.11:51820"})
	removed := added
	removed.Peers = slices.DeleteFunc(slices.Clone(added.Peers), func(p config.Peer) bool { return p.Index == 9 })
	for _, next := range []*config.Config{&added, &removed} {
		var peers []int
		for _, p := range next.Peers {
			peers = append(peers, p.Index)
		}
		want := firewall.NodeRules(firewall.Node{PhonePort: next.PhonePort, Lines: next.Lines, Peers: peers, VethPrefix: h.sup.names.VethPrefix()})
		// The fake's one generation moved with the peers' loads after the
		// node's (see TestNodeFirewallReloadFailureKeepsTable): a check
		// takes the node table's again, as the kernel's own per-namespace
		// generation would have stayed.
		h.sup.Do(t.Context(), func() { h.sup.reconcile(0) })
		loads, changes := counts()
		h.reload <- next
		h.sup.Do(t.Context(), func() {}) // the reload is done
		if got := h.fw.table(""); got != want {
			t.Errorf("peers %v: node table =\n%s\nwant\n%s", peers, got, want)
		}
		newLoads, newChanges := counts()
		// Peer 11's own table is loaded; the node's is changed once.
		wantLoads := loads
		if next == &added {
			wantLoads++
		}
		if newLoads != wantLoads || newChanges != changes+1 {
			t.Errorf("peers %v: %d loads and %d changes of tables, want %d and %d", peers, newLoads-loads, newChanges-changes, wantLoads-loads, 1)
		}
	}
	h.stop()
}

// TestReloadTouchesOnlyTheChangedPeer: adding a peer while others run
// builds that peer and does not go through the built ones again (with 253
// peers that took seconds), and a periodic check still verifies built
// peers in full, a few at a time.
func TestReloadTouchesOnlyTheChangedPeer(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig(t)
	h.start(cfg)
	h.rec.Take()
	k, _ := nodekey.Generate()
	next := *cfg
	next.Peers = append(slices.Clone(cfg.Peers), config.Peer{Index: 11, Name: "dave", PublicKey: k.Public(), Endpoint: "198.51.100.11:51820"})
	h.reload <- &next
	deadline := time.Now().Add(2 * time.Second)
	var got string
	for time.Now().Before(deadline) && !strings.Contains(got, "route add pl-11 10.11.0.0/16 dev pl11") {
		got += h.rec.Take()
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(got, "ns add pl-11") {
		t.Fatalf("reload transcript lacks peer 11's namespace:\n%s", got)
	}
	for _, other := range []string{"pl-7", "plv7", "pl-9", "plv9"} {
		if strings.Contains(got, other) {
			t.Errorf("reload that added peer 11 touched %s:\n%s", other, got)
		}
	}
	// A route deleted behind the daemon's back inside a built peer's
	// namespace is not seen by the cheap check, and is repaired when the
	// peer's turn for a full check comes.
	route := netip.MustParsePrefix("10.9.0.0/16")
	if err := h.rec.DeleteRoute("pl-9", route); err != nil {
		t.Fatal(err)
	}
	h.rec.Take()
	h.sup.Do(t.Context(), func() { h.sup.reconcile(0) })
	if got := h.rec.Take(); strings.Contains(got, "route add pl-9") {
		t.Errorf("a check without full verification went through peer 9:\n%s", got)
	}
	h.sup.Do(t.Context(), func() { h.sup.reconcile(len(next.Peers)) })
	if got, want := h.rec.Take(), "route add pl-9 10.9.0.0/16 dev pl9"; !strings.Contains(got, want) {
		t.Errorf("a check verifying every peer in full: transcript lacks %q:\n%s", want, got)
	}
	h.stop()
}
