package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by every Lab, Host and Phone method after Lab.Close.
var ErrClosed = errors.New("lab: closed")

// NSPrefix starts the name of every namespace a Lab creates. The full name is
// plt-<pid>-<n>, where pid is the creating process and n counts the
// namespaces that process has created.
const NSPrefix = "plt-"

const (
	// cmdTimeout bounds each setup command (ip, sox).
	cmdTimeout = 15 * time.Second
	// stopGrace is how long a process gets between SIGTERM and SIGKILL.
	stopGrace = 3 * time.Second
)

// nsSeq numbers namespaces across all Labs of this process, so that Labs
// running in parallel tests never collide.
var nsSeq atomic.Int64

// Lab is one test network. It records every namespace, process and file it
// creates; Close removes them all.
type Lab struct {
	log  *slog.Logger
	dir  string
	keep bool

	mu sync.Mutex
	// The following fields are guarded by mu. Creating methods hold mu while
	// they create, so Close never misses something created concurrently.
	closed  bool
	hosts   []*Host
	procs   []*Proc
	closers []func() error
	names   map[string]bool // logical host names, to keep them unique

	closeOnce sync.Once
	closeErr  error
}

// New creates an empty lab with a fresh working directory. log may be nil.
// It fails if the platform or tools (ip, nsenter) are missing; it does not
// check for root, since the first Host call reports that precisely.
func New(log *slog.Logger) (*Lab, error) {
	if err := platformCheck(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("lab needs %s (Debian packages iproute2, util-linux): %w", tool, err)
		}
	}
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", NSPrefix, os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("creating lab directory: %w", err)
	}
	l := &Lab{
		log:   log,
		dir:   dir,
		keep:  os.Getenv("PEERLINE_LAB_KEEP") != "",
		names: map[string]bool{},
	}
	log.Info("lab created", "path", dir)
	return l, nil
}

// Dir is the lab's working directory (configs, logs, recordings). Close
// removes it unless PEERLINE_LAB_KEEP is set.
func (l *Lab) Dir() string { return l.dir }

// Logger returns the lab's logger.
func (l *Lab) Logger() *slog.Logger { return l.log }

// Hosts returns the hosts created so far, in creation order.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.hosts)
}

// Procs returns the processes started so far, in start order.
func (l *Lab) Procs() []*Proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.procs)
}

// OnClose registers fn to run first thing in Close, in reverse order of
// registration, before processes are stopped and namespaces deleted. It
// returns ErrClosed (without running fn) if the lab is already closed.
func (l *Lab) OnClose(fn func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.closers = append(l.closers, fn)
	return nil
}

// Host creates a namespace for the machine called name (a logical name such
// as "piA", unique within the lab) and brings its loopback up.
func (l *Lab) Host(name string) (*Host, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hostLocked(name)
}

func (l *Lab) hostLocked(name string) (*Host, error) {
	if l.closed {
		return nil, ErrClosed
	}
	if name == "" || strings.ContainsAny(name, "/ \t\n") {
		return nil, fmt.Errorf("host name %q: want a non-empty name without spaces or slashes", name)
	}
	if l.names[name] {
		return nil, fmt.Errorf("host name %q already used in this lab", name)
	}
	ns := fmt.Sprintf("%s%d-%d", NSPrefix, os.Getpid(), nsSeq.Add(1)-1)
	if _, err := run(context.Background(), "ip", "netns", "add", ns); err != nil {
		return nil, fmt.Errorf("creating namespace %s for host %s (needs root): %w", ns, name, err)
	}
	h := &Host{lab: l, name: name, ns: ns}
	l.hosts = append(l.hosts, h)
	l.names[name] = true
	if _, err := run(context.Background(), "ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
		return nil, fmt.Errorf("host %s: %w", h, err)
	}
	l.log.Info("host created", "host", name, "ns", ns)
	return h, nil
}

// Veth connects a and b with a veth pair: interface aIf inside a and bIf
// inside b, both up, without addresses. The pair is created directly inside
// the two namespaces, so no interface ever appears in the root namespace.
// a and b may be the same host.
func (l *Lab) Veth(a *Host, aIf string, b *Host, bIf string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.vethLocked(a, aIf, b, bIf)
}

func (l *Lab) vethLocked(a *Host, aIf string, b *Host, bIf string) error {
	if l.closed {
		return ErrClosed
	}
	if err := l.owns(a); err != nil {
		return err
	}
	if err := l.owns(b); err != nil {
		return err
	}
	for _, ifname := range []string{aIf, bIf} {
		if err := checkIfname(ifname); err != nil {
			return err
		}
	}
	if a == b && aIf == bIf {
		return fmt.Errorf("veth %s: both ends have the same name", aIf)
	}
	ctx := context.Background()
	if _, err := run(ctx, "ip", "link", "add", "name", aIf, "netns", a.ns,
		"type", "veth", "peer", "name", bIf, "netns", b.ns); err != nil {
		return fmt.Errorf("creating veth %s:%s <-> %s:%s: %w", a.name, aIf, b.name, bIf, err)
	}
	for _, end := range []struct {
		h      *Host
		ifname string
	}{{a, aIf}, {b, bIf}} {
		if _, err := run(ctx, "ip", "-n", end.h.ns, "link", "set", end.ifname, "up"); err != nil {
			return fmt.Errorf("veth %s:%s: %w", end.h.name, end.ifname, err)
		}
	}
	l.log.Info("veth created", "a", a.name+":"+aIf, "b", b.name+":"+bIf)
	return nil
}

func (l *Lab) owns(h *Host) error {
	if h == nil || h.lab != l {
		return fmt.Errorf("host %v does not belong to this lab", h)
	}
	return nil
}

func checkIfname(name string) error {
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t\n:") {
		return fmt.Errorf("interface name %q: want 1-15 characters without spaces, slashes or colons", name)
	}
	return nil
}

// Bridge is a namespace holding a Linux bridge device "br0", standing for a
// shared network such as the Internet or a home LAN. Hosts are plugged into
// it with Attach. The embedded Host runs commands in the bridge namespace
// (e.g. tc netem on a port to add delay or loss).
type Bridge struct {
	*Host
	mu    sync.Mutex
	ports int
}

// BridgeDev is the name of the bridge device inside a Bridge namespace.
const BridgeDev = "br0"

// Bridge creates a bridge namespace called name.
func (l *Lab) Bridge(name string) (*Bridge, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, err := l.hostLocked(name)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	if _, err := run(ctx, "ip", "-n", h.ns, "link", "add", BridgeDev, "type", "bridge"); err != nil {
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	if _, err := run(ctx, "ip", "-n", h.ns, "link", "set", BridgeDev, "up"); err != nil {
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	return &Bridge{Host: h}, nil
}

// Attach plugs h into the bridge with a veth pair: interface ifname inside h
// with address cidr (e.g. "198.51.100.1/24"; empty for none), and a port
// named p<k> inside the bridge namespace. It returns the port name.
// Use documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24)
// for "public" addresses.
func (b *Bridge) Attach(h *Host, ifname, cidr string) (port string, err error) {
	b.mu.Lock()
	port = fmt.Sprintf("p%d", b.ports)
	b.ports++
	b.mu.Unlock()
	l := b.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.vethLocked(b.Host, port, h, ifname); err != nil {
		return "", err
	}
	if _, err := run(context.Background(), "ip", "-n", b.ns, "link", "set", port, "master", BridgeDev); err != nil {
		return "", fmt.Errorf("bridge %s: enslaving %s: %w", b.name, port, err)
	}
	if cidr != "" {
		if err := h.addrLocked(ifname, cidr); err != nil {
			return "", err
		}
	}
	return port, nil
}

// Host is one machine of the lab: a named network namespace.
type Host struct {
	lab  *Lab
	name string
	ns   string
}

// Name is the logical name given to Lab.Host ("piA").
func (h *Host) Name() string { return h.name }

// NS is the namespace name (plt-<pid>-<n>).
func (h *Host) NS() string { return h.ns }

// NSPath is the namespace's bind mount, /run/netns/<ns>.
func (h *Host) NSPath() string { return "/run/netns/" + h.ns }

// Lab returns the lab the host belongs to.
func (h *Host) Lab() *Lab { return h.lab }

func (h *Host) String() string {
	if h == nil {
		return "<nil host>"
	}
	return h.name + "(" + h.ns + ")"
}

func (h *Host) checkOpen() error {
	h.lab.mu.Lock()
	defer h.lab.mu.Unlock()
	if h.lab.closed {
		return ErrClosed
	}
	return nil
}

// Addr adds address cidr ("10.0.1.1/30") to interface ifname and brings the
// interface up.
func (h *Host) Addr(ifname, cidr string) error {
	h.lab.mu.Lock()
	defer h.lab.mu.Unlock()
	if h.lab.closed {
		return ErrClosed
	}
	return h.addrLocked(ifname, cidr)
}

func (h *Host) addrLocked(ifname, cidr string) error {
	ctx := context.Background()
	if _, err := run(ctx, "ip", "-n", h.ns, "addr", "add", cidr, "dev", ifname); err != nil {
		return fmt.Errorf("host %s: adding %s to %s: %w", h, cidr, ifname, err)
	}
	if _, err := run(ctx, "ip", "-n", h.ns, "link", "set", ifname, "up"); err != nil {
		return fmt.Errorf("host %s: %w", h, err)
	}
	h.lab.log.Info("address added", "host", h.name, "dev", ifname, "addr", cidr)
	return nil
}

// Route adds a route: the arguments follow `ip route add`, e.g.
// h.Route("default", "via", "10.0.1.2") or h.Route("10.7.0.0/16", "dev", "wg0").
func (h *Host) Route(args ...string) error {
	return h.IP(append([]string{"route", "add"}, args...)...)
}

// IP runs `ip -n <ns> args…` (for links, neighbours, rules, …).
func (h *Host) IP(args ...string) error {
	if err := h.checkOpen(); err != nil {
		return err
	}
	argv := append([]string{"ip", "-n", h.ns}, args...)
	if _, err := run(context.Background(), argv...); err != nil {
		return fmt.Errorf("host %s: %w", h, err)
	}
	return nil
}

// Sysctl sets a network sysctl of the host's namespace, e.g.
// h.Sysctl("net.ipv4.ip_forward", "1"). Only net.* keys are per-namespace;
// others would change the whole machine and are refused.
func (h *Host) Sysctl(key, value string) error {
	if !strings.HasPrefix(key, "net.") || strings.Contains(key, "..") || strings.Contains(key, "/") {
		return fmt.Errorf("sysctl %q: only net.* keys are per network namespace", key)
	}
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	err := h.Do(func() error { return os.WriteFile(path, []byte(value+"\n"), 0) })
	if err != nil {
		return fmt.Errorf("host %s: sysctl %s=%s: %w", h, key, value, err)
	}
	return nil
}

// Command returns a command that runs argv inside the host's network
// namespace (nsenter --net), and in the machine's mount namespace. The
// caller starts and waits for it. Cancelling ctx kills it.
func (h *Host) Command(ctx context.Context, argv ...string) *exec.Cmd {
	full := append([]string{"--net=" + h.NSPath(), "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// Run runs a short command inside the host and returns its combined output.
// It is bounded by ctx and by a 15-second timeout. The error includes the
// output.
func (h *Host) Run(ctx context.Context, argv ...string) (string, error) {
	if err := h.checkOpen(); err != nil {
		return "", err
	}
	if len(argv) == 0 {
		return "", errors.New("run: empty command")
	}
	full := append([]string{"nsenter", "--net=" + h.NSPath(), "--"}, argv...)
	out, err := run(ctx, full...)
	if err != nil {
		return out, fmt.Errorf("host %s: %w", h, err)
	}
	return out, nil
}

// Dial opens a connection from inside the host's namespace. The returned
// connection can be used from any goroutine.
func (h *Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ListenPacket opens a packet socket (e.g. "udp4", "198.51.100.1:9") inside
// the host's namespace.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := h.Do(func() error {
		var err error
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// Listen opens a stream listener inside the host's namespace.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := h.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// Do runs fn on a new OS thread that has been switched into the host's
// network namespace. The thread is never switched back; the Go runtime
// discards it when fn returns. Sockets opened by fn belong to the namespace
// and can be used from any goroutine afterwards. fn must not start
// goroutines that expect to be in the namespace.
func (h *Host) Do(fn func() error) error {
	if err := h.checkOpen(); err != nil {
		return err
	}
	return doInNamespace(h.NSPath(), fn)
}

// In runs fn inside h's namespace, as Do, and returns what it made: a
// socket opened there, typically.
func In[T any](h *Host, fn func() (T, error)) (T, error) {
	var v T
	err := h.Do(func() error {
		var err error
		v, err = fn()
		return err
	})
	return v, err
}

// Close stops all processes, deletes all namespaces (with their interfaces),
// and removes Dir. It runs once; later calls return the first result.
// Concurrent callers wait until the first call is done.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.close() })
	return l.closeErr
}

func (l *Lab) close() error {
	l.mu.Lock()
	l.closed = true
	hosts, procs, closers := l.hosts, l.procs, l.closers
	l.mu.Unlock()

	start := time.Now()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, stopAll(procs, stopGrace))
	for i := len(hosts) - 1; i >= 0; i-- {
		h := hosts[i]
		if out, err := run(context.Background(), "ip", "netns", "del", h.ns); err != nil &&
			!strings.Contains(out, "No such file") {
			errs = append(errs, fmt.Errorf("deleting namespace %s of %s: %w", h.ns, h.name, err))
		}
	}
	if l.keep {
		l.log.Info("lab kept", "path", l.dir)
	} else if err := os.RemoveAll(l.dir); err != nil {
		errs = append(errs, fmt.Errorf("removing lab directory: %w", err))
	}
	err := errors.Join(errs...)
	l.log.Info("lab closed", "hosts", len(hosts), "procs", len(procs), "took", time.Since(start).Round(time.Millisecond), "err", err)
	return err
}

// DumpLogs writes the last lines of every process log to w, for a failed
// test or demo. It works until Close removes Dir.
func (l *Lab) DumpLogs(w io.Writer, lines int) {
	for _, p := range l.Procs() {
		fmt.Fprintf(w, "--- %s on %s (pid %d), last %d lines of %s\n", p.name, p.host, p.Pid(), lines, p.logPath)
		tail, err := tailFile(p.logPath, lines)
		if err != nil {
			fmt.Fprintf(w, "(%v)\n", err)
			continue
		}
		io.WriteString(w, tail)
	}
}

func tailFile(path string, n int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var ring []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		ring = append(ring, sc.Text())
		if len(ring) > n {
			ring = ring[1:]
		}
	}
	if len(ring) == 0 {
		return "", sc.Err()
	}
	return strings.Join(ring, "\n") + "\n", sc.Err()
}

// run runs argv in the current (root) network namespace, bounded by ctx and
// cmdTimeout, and returns its combined output. Callers only pass commands
// that act on lab namespaces (ip netns, ip -n <ns>, nsenter --net=<ns>) or on
// files (sox).
func run(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// StaleNamespaces returns the lab names in names (namespaces as listed by
// `ip netns list`, or lab directory names, both plt-<pid>-<n>) whose creating
// process is no longer alive according to alive. They are left over from a
// lab process that was killed before its Close ran.
func StaleNamespaces(names []string, alive func(pid int) bool) []string {
	var stale []string
	for _, line := range names {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, NSPrefix)
		if !ok {
			continue
		}
		pidStr, nStr, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 {
			continue
		}
		if _, err := strconv.Atoi(nStr); err != nil {
			continue
		}
		if !alive(pid) {
			stale = append(stale, name)
		}
	}
	return stale
}

// Sweep deletes lab namespaces and working directories (plt-<pid>-* in
// os.TempDir) left over by lab processes that died without closing their lab
// (SIGKILL, a test binary timing out). Processes of such a lab have died with
// it (PDEATHSIG), so deleting the names frees everything. It returns what it
// deleted. It is not called automatically; cmd/peerlab can offer it as
// -cleanup.
func Sweep(log *slog.Logger) ([]string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out, err := run(context.Background(), "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var deleted []string
	var errs []error
	for _, ns := range StaleNamespaces(strings.Split(out, "\n"), processAlive) {
		if _, err := run(context.Background(), "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, ns)
		log.Info("stale lab namespace deleted", "ns", ns)
	}
	entries, _ := os.ReadDir(os.TempDir())
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	for _, d := range StaleNamespaces(dirs, processAlive) {
		path := filepath.Join(os.TempDir(), d)
		if err := os.RemoveAll(path); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, path)
		log.Info("stale lab directory deleted", "path", path)
	}
	return deleted, errors.Join(errs...)
}

// safeName turns a logical name into something usable in a file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

// uniquePath returns dir/base+ext, or dir/base-<k>+ext if that exists.
func uniquePath(dir, base, ext string) string {
	p := filepath.Join(dir, base+ext)
	for k := 2; ; k++ {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return p
		}
		p = filepath.Join(dir, fmt.Sprintf("%s-%d%s", base, k, ext))
	}
}
