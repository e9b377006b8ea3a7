//go:build linux && lab

package netsetup_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/netsetup"
	"github.com/peerline/peerline/pkg/netsetup/netsetuptest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// runDir is where named namespaces live.
const runDir = "/run/netns"

var seq atomic.Int32

// nsName returns a fresh namespace name, plt-<pid>-<n>.
func nsName() string {
	return fmt.Sprintf("plt-%d-%d", os.Getpid(), seq.Add(1))
}

// linkName returns a fresh link name, plt<pid>v<n> (at most 15 bytes).
func linkName() string {
	return fmt.Sprintf("plt%dv%d", os.Getpid(), seq.Add(1))
}

// run runs a command (ip, mostly) and returns its output, failing the test
// if it fails.
func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runErr(t, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(t *testing.T, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

// deleteNSLater registers the deletion of namespace name, whoever creates it.
// It goes through ip, not the code under test.
func deleteNSLater(t *testing.T, name string) {
	t.Cleanup(func() {
		path := filepath.Join(runDir, name)
		unix.Unmount(path, unix.MNT_DETACH)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cleanup: removing %s: %v", path, err)
		}
	})
}

// newTestNS makes a namespace with ip (independently of the code under
// test), deleted at cleanup.
func newTestNS(t *testing.T) string {
	t.Helper()
	name := nsName()
	deleteNSLater(t, name)
	run(t, "ip", "netns", "add", name)
	return name
}

// newKernel returns a Kernel whose root is a fresh test namespace, so that
// nothing touches the machine's real root namespace.
func newKernel(t *testing.T) (*netsetup.Kernel, string) {
	t.Helper()
	root := newTestNS(t)
	k, err := netsetup.NewKernel(root, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k, root
}

// realRootState is what the machine's real root namespace has that this
// test process could have changed: links named after our pid, and the
// sysctl the tests write.
func realRootState(t *testing.T) string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, fmt.Sprintf("plt%d", os.Getpid())) {
			names = append(names, l.Attrs().Name)
		}
	}
	fwd, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("links %v ip_forward %s", names, bytes.TrimSpace(fwd))
}

// ourNamespaces lists /run/netns entries this process named.
func ourNamespaces(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, line := range strings.Split(run(t, "ip", "netns", "list"), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], fmt.Sprintf("plt-%d-", os.Getpid())) {
			names = append(names, f[0])
		}
	}
	slices.Sort(names)
	return names
}

// ping sends one ICMP echo from inside ns to dst and waits for the reply.
// It is done in Go rather than with ping(8), which the machine may not have.
func ping(o netsetup.Ops, ns string, dst netip.Addr) error {
	return o.Do(ns, func() error {
		c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return err
		}
		defer c.Close()
		id := uint16(os.Getpid())
		req := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'p', 'l'}
		binary.BigEndian.PutUint16(req[2:], icmpChecksum(req))
		if _, err := c.WriteTo(req, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return fmt.Errorf("no echo reply from %v in %s: %w", dst, ns, err)
			}
			// The raw socket sees every ICMP packet: keep only our reply.
			if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id &&
				from.(*net.IPAddr).IP.Equal(dst.AsSlice()) {
				return nil
			}
		}
	})
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func readSysctl(t *testing.T, ns, key string) string {
	t.Helper()
	return strings.TrimSpace(run(t, "ip", "netns", "exec", ns, "cat", filepath.Join("/proc/sys", key)))
}

// countLines counts the lines of out that contain all of words.
func countLines(out string, words ...string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(line, w) }) {
			n++
		}
	}
	return n
}

var (
	rootAddr = netip.MustParsePrefix("169.254.7.1/30")
	nsAddr   = netip.MustParsePrefix("169.254.7.2/30")
	remote   = netip.MustParsePrefix("10.7.0.0/16")
	dflt     = netip.MustParsePrefix("0.0.0.0/0")
	gw       = netip.MustParseAddr("169.254.7.1")
	nsLoAddr = netip.MustParsePrefix("10.7.0.1/32") // reached through the 10.7/16 route
	rootLo   = netip.MustParsePrefix("10.0.1.2/32") // reached through the default route
)

// bringUp is what the supervisor does for one tunnel, plus a loopback
// address on each side to ping through the routes.
func bringUp(o netsetup.Ops, tn, rootEnd string) error {
	for _, step := range []func() error{
		func() error { return o.LinkUp("", "lo") },
		func() error { return o.EnsureAddr("", "lo", rootLo) },
		func() error { return o.EnsureNamespace(tn) },
		func() error { return o.EnsureAddr(tn, "lo", nsLoAddr) },
		func() error { return o.EnsureVeth(rootEnd, tn, "veth0", 1420) },
		func() error { return o.LinkUp("", rootEnd) },
		func() error { return o.LinkUp(tn, "veth0") },
		func() error { return o.EnsureAddr("", rootEnd, rootAddr) },
		func() error { return o.EnsureAddr(tn, "veth0", nsAddr) },
		func() error { return o.EnsureRoute("", remote, rootEnd, netip.Addr{}) },
		func() error { return o.EnsureRoute(tn, dflt, "veth0", gw) },
		func() error { return o.SetSysctl(tn, "net/ipv4/ip_forward", "1") },
		func() error { return o.SetSysctl("", "net/ipv4/ip_forward", "1") },
		func() error { return o.SetSysctl("", "net/ipv4/conf/all/rp_filter", "2") },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func TestKernelTunnel(t *testing.T) {
	labtest.RequireRoot(t)
	realBefore := realRootState(t)
	k, root := newKernel(t)
	nsBefore := ourNamespaces(t)
	linksBefore := run(t, "ip", "-n", root, "-o", "link", "show")
	tn, rootEnd := nsName(), linkName()
	deleteNSLater(t, tn)

	for round := 1; round <= 2; round++ {
		if err := bringUp(k, tn, rootEnd); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}

	// Each thing exists once, as asked, after two rounds.
	checks := []struct {
		out   string
		words []string
	}{
		{run(t, "ip", "-n", root, "-o", "addr", "show", "dev", rootEnd), []string{"inet 169.254.7.1/30"}},
		{run(t, "ip", "-n", tn, "-o", "addr", "show", "dev", "veth0"), []string{"inet 169.254.7.2/30"}},
		{run(t, "ip", "-n", tn, "-o", "addr", "show", "dev", "lo"), []string{"inet 10.7.0.1/32"}},
		// ip shows a peer in another namespace as @ifN plus link-netns.
		{run(t, "ip", "-n", root, "-o", "link", "show", "dev", rootEnd), []string{"mtu 1420", ",UP,", "link-netns " + tn}},
		{run(t, "ip", "-n", tn, "-o", "link", "show", "dev", "veth0"), []string{"mtu 1420", ",UP,", "link-netns " + root}},
		{run(t, "ip", "-n", tn, "-o", "link", "show", "dev", "lo"), []string{"UP"}},
		{run(t, "ip", "-n", root, "route", "show", "10.7.0.0/16"), []string{"dev " + rootEnd, "scope link"}},
		{run(t, "ip", "-n", tn, "route", "show", "default"), []string{"via 169.254.7.1 dev veth0"}},
	}
	for _, c := range checks {
		if n := countLines(c.out, c.words...); n != 1 {
			t.Errorf("%d lines with %q, want 1, in\n%s", n, c.words, c.out)
		}
	}
	for _, s := range []struct{ ns, key, want string }{
		{tn, "net/ipv4/ip_forward", "1"},
		{root, "net/ipv4/ip_forward", "1"},
		{root, "net/ipv4/conf/all/rp_filter", "2"},
	} {
		if got := readSysctl(t, s.ns, s.key); got != s.want {
			t.Errorf("%s %s = %s, want %s", s.ns, s.key, got, s.want)
		}
	}
	if got := realRootState(t); got != realBefore {
		t.Errorf("real root namespace changed: %s, was %s", got, realBefore)
	}

	for _, p := range []struct {
		ns  string
		dst string
	}{
		{"", "169.254.7.2"}, // across the veth
		{"", "10.7.0.1"},    // through the device route
		{tn, "169.254.7.1"},
		{tn, "10.0.1.2"}, // through the default route
	} {
		if err := ping(k, p.ns, netip.MustParseAddr(p.dst)); err != nil {
			t.Errorf("ping %s from %q: %v", p.dst, p.ns, err)
		}
	}

	if got, err := k.Links("", "plt"); err != nil || !slices.Equal(got, []string{rootEnd}) {
		t.Errorf("Links(\"\", plt) = %v, %v, want [%s]", got, err, rootEnd)
	}
	if got, err := k.Links(tn, ""); err != nil || !slices.Equal(got, []string{"lo", "veth0"}) {
		t.Errorf("Links(%s) = %v, %v, want [lo veth0]", tn, got, err)
	}
	if got, err := k.Namespaces(fmt.Sprintf("plt-%d-", os.Getpid())); err != nil || !slices.Contains(got, tn) || !slices.Contains(got, root) {
		t.Errorf("Namespaces = %v, %v, want %s and %s in it", got, err, tn, root)
	}

	// Deletes, each twice.
	for round := 1; round <= 2; round++ {
		for _, err := range []error{
			k.DeleteRoute(tn, dflt),
			k.DeleteRoute("", remote),
			k.DeleteAddr(tn, "veth0", nsAddr),
			k.DeleteAddr("", rootEnd, rootAddr),
		} {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	if out := run(t, "ip", "-n", root, "route", "show", "10.7.0.0/16"); out != "" {
		t.Errorf("route 10.7.0.0/16 still there: %s", out)
	}
	if out := run(t, "ip", "-n", tn, "route", "show", "default"); out != "" {
		t.Errorf("default route still there: %s", out)
	}
	if out := run(t, "ip", "-n", tn, "-o", "addr", "show", "dev", "veth0"); strings.Contains(out, "169.254.7.2") {
		t.Errorf("address still there: %s", out)
	}
	for round := 1; round <= 2; round++ {
		if err := k.DeleteNamespace(tn); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	// At once, not when the kernel gets round to destroying the namespace.
	if got, err := k.Links("", rootEnd); err != nil || len(got) != 0 {
		t.Errorf("after DeleteNamespace, Links(\"\", %s) = %v, %v, want none", rootEnd, got, err)
	}
	if got := ourNamespaces(t); !slices.Equal(got, nsBefore) {
		t.Errorf("ip netns list: %v, want %v", got, nsBefore)
	}
	if err := k.DeleteAddr("", "lo", rootLo); err != nil {
		t.Fatal(err)
	}
	linksAfter := run(t, "ip", "-n", root, "-o", "link", "show")
	if strings.Count(linksAfter, "\n") != strings.Count(linksBefore, "\n") {
		t.Errorf("links in %s:\n%s\nwant as before:\n%s", root, linksAfter, linksBefore)
	}
	if got := realRootState(t); got != realBefore {
		t.Errorf("real root namespace changed: %s, was %s", got, realBefore)
	}
}

// TestKernelRefusesLikeRecorder checks that the fake refuses what the kernel
// refuses, with the same errors, so that supervisor tests on the fake catch
// steps in the wrong order.
func TestKernelRefusesLikeRecorder(t *testing.T) {
	labtest.RequireRoot(t)
	k, _ := newKernel(t)
	tn, rootEnd, missing := nsName(), linkName(), nsName()
	deleteNSLater(t, tn)
	for name, o := range map[string]netsetup.Ops{"kernel": k, "recorder": netsetuptest.NewRecorder()} {
		t.Run(name, func(t *testing.T) {
			steps := []struct {
				name    string
				do      func() error
				wantErr error
			}{
				{"veth into missing namespace", func() error { return o.EnsureVeth(rootEnd, missing, "veth0", 0) }, netsetup.ErrNoNamespace},
				{"sysctl in missing namespace", func() error { return o.SetSysctl(missing, "net/ipv4/ip_forward", "1") }, netsetup.ErrNoNamespace},
				{"links of missing namespace", func() error { _, err := o.Links(missing, ""); return err }, netsetup.ErrNoNamespace},
				{"Do in missing namespace", func() error { return o.Do(missing, func() error { return nil }) }, netsetup.ErrNoNamespace},
				{"namespace", func() error { return o.EnsureNamespace(tn) }, nil},
				{"address on missing link", func() error { return o.EnsureAddr(tn, "veth0", nsAddr) }, syscall.ENODEV},
				{"up of missing link", func() error { return o.LinkUp(tn, "veth0") }, syscall.ENODEV},
				{"veth", func() error { return o.EnsureVeth(rootEnd, tn, "veth0", 0) }, nil},
				{"route on a down link", func() error { return o.EnsureRoute(tn, remote, "veth0", netip.Addr{}) }, syscall.ENETDOWN},
				{"up", func() error { return o.LinkUp(tn, "veth0") }, nil},
				{"gateway off every subnet", func() error { return o.EnsureRoute(tn, dflt, "veth0", gw) }, syscall.ENETUNREACH},
				{"address", func() error { return o.EnsureAddr(tn, "veth0", nsAddr) }, nil},
				{"gateway route, peer down", func() error { return o.EnsureRoute(tn, dflt, "veth0", gw) }, nil},
				{"namespace end taken", func() error { return o.EnsureVeth(linkName(), tn, "veth0", 0) }, syscall.EEXIST},
				{"delete route in missing namespace", func() error { return o.DeleteRoute(missing, dflt) }, nil},
				{"delete link in missing namespace", func() error { return o.DeleteLink(missing, "veth0") }, nil},
				{"delete missing namespace", func() error { return o.DeleteNamespace(missing) }, nil},
				{"delete namespace", func() error { return o.DeleteNamespace(tn) }, nil},
			}
			for _, s := range steps {
				err := s.do()
				if s.wantErr == nil && err != nil || !errors.Is(err, s.wantErr) {
					t.Errorf("%s: err = %v, want %v", s.name, err, s.wantErr)
				}
			}
		})
	}
}

func TestKernelVethRepair(t *testing.T) {
	labtest.RequireRoot(t)
	k, root := newKernel(t)
	ns1, ns2, rootEnd := nsName(), nsName(), linkName()
	deleteNSLater(t, ns1)
	deleteNSLater(t, ns2)
	for _, err := range []error{
		k.EnsureNamespace(ns1),
		k.EnsureNamespace(ns2),
		k.EnsureVeth(rootEnd, ns2, "veth0", 0), // peer in the wrong namespace
		k.EnsureVeth(rootEnd, ns1, "veth0", 1400),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := k.Links(ns2, ""); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("Links(%s) = %v, want [lo]: the old pair must be gone", ns2, got)
	}
	if out := run(t, "ip", "-n", ns1, "-o", "link", "show", "veth0"); countLines(out, "mtu 1400", "link-netns "+root) != 1 {
		t.Errorf("%s/veth0 is not the peer of %s with MTU 1400:\n%s", ns1, rootEnd, out)
	}
	// A new MTU reaches both ends of the existing pair.
	if err := k.EnsureVeth(rootEnd, ns1, "veth0", 1380); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{
		run(t, "ip", "-n", ns1, "-o", "link", "show", "veth0"),
		run(t, "ip", "-n", root, "-o", "link", "show", rootEnd),
	} {
		if !strings.Contains(out, "mtu 1380") {
			t.Errorf("want mtu 1380 in %s", out)
		}
	}
	// Deleting either end deletes both, and again is fine.
	for range 2 {
		if err := k.DeleteLink("", rootEnd); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := k.Links(ns1, ""); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("Links(%s) = %v after deleting the root end, want [lo]", ns1, got)
	}
	// A link of another kind under the root end's name is not ours to
	// replace. (A bridge: some lab kernels have no dummy module.)
	br := linkName()
	run(t, "ip", "-n", root, "link", "add", br, "type", "bridge")
	if err := k.EnsureVeth(br, ns1, "veth0", 0); err == nil || !strings.Contains(err.Error(), "bridge") {
		t.Errorf("EnsureVeth over a bridge = %v, want an error naming the bridge", err)
	}
}

// TestKernelNamespaceRemadeBehindOurBack checks that the cached netlink
// handle follows a namespace deleted and made again by someone else.
func TestKernelNamespaceRemadeBehindOurBack(t *testing.T) {
	labtest.RequireRoot(t)
	k, _ := newKernel(t)
	tn, rootEnd := nsName(), linkName()
	deleteNSLater(t, tn)
	if err := errors.Join(k.EnsureNamespace(tn), k.EnsureVeth(rootEnd, tn, "veth0", 0)); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "del", tn)
	run(t, "ip", "netns", "add", tn)
	if err := errors.Join(k.EnsureNamespace(tn), k.EnsureVeth(rootEnd, tn, "veth0", 0)); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "ip", "-n", tn, "-o", "link", "show"); countLines(out, "veth0@") != 1 || countLines(out, "lo:", "UP") != 1 {
		t.Errorf("new %s should have veth0 and lo up:\n%s", tn, out)
	}
}

func TestKernelStaleNamespaceFile(t *testing.T) {
	labtest.RequireRoot(t)
	k, _ := newKernel(t)
	stale := func() string {
		name := nsName()
		deleteNSLater(t, name)
		if err := os.MkdirAll(runDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(runDir, name), nil, 0o444); err != nil {
			t.Fatal(err)
		}
		return name
	}

	name := stale()
	if got, _ := k.Namespaces(name); !slices.Equal(got, []string{name}) {
		t.Errorf("Namespaces(%s) = %v, want the stale file listed", name, got)
	}
	if err := k.Do(name, func() error { return nil }); !errors.Is(err, netsetup.ErrNoNamespace) {
		t.Errorf("Do(stale) = %v, want ErrNoNamespace", err)
	}
	if _, err := k.Links(name, ""); !errors.Is(err, netsetup.ErrNoNamespace) {
		t.Errorf("Links(stale) = %v, want ErrNoNamespace", err)
	}
	if err := k.EnsureNamespace(name); err != nil {
		t.Fatalf("EnsureNamespace over a stale file: %v", err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(filepath.Join(runDir, name), &fs); err != nil || fs.Type != unix.NSFS_MAGIC {
		t.Errorf("%s is not a mounted namespace: %v, type %#x", name, err, fs.Type)
	}
	if out := run(t, "ip", "-n", name, "-o", "link", "show", "lo"); !strings.Contains(out, "UP") {
		t.Errorf("lo is not up in %s: %s", name, out)
	}

	name = stale()
	if err := k.DeleteNamespace(name); err != nil {
		t.Fatalf("DeleteNamespace(stale) = %v", err)
	}
	if _, err := os.Stat(filepath.Join(runDir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale file still there: %v", err)
	}
}

func TestNewKernelMissingRoot(t *testing.T) {
	labtest.RequireRoot(t)
	if _, err := netsetup.NewKernel(nsName(), nil); !errors.Is(err, netsetup.ErrNoNamespace) {
		t.Errorf("NewKernel(missing) = %v, want ErrNoNamespace", err)
	}
}

// startNS is the namespace the test process started in (that of its main
// thread, which /proc/self shows).
var startNS, _ = os.Readlink("/proc/self/ns/net")

// threadNS returns the namespace of the thread this goroutine runs on now.
func threadNS(t *testing.T) string {
	t.Helper()
	s, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDo(t *testing.T) {
	labtest.RequireRoot(t)
	ns := newTestNS(t)
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(runDir, ns), &st); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	self := startNS

	before := threadNS(t)
	var inside string
	if err := netsetup.Do(ns, func() error {
		var err error
		inside, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside != want {
		t.Errorf("inside Do: %s, want %s", inside, want)
	}
	if after := threadNS(t); before != self || after != self {
		t.Errorf("caller's namespace: %s before, %s after, want %s", before, after, self)
	}

	var here string
	if err := netsetup.Do("", func() error { here = threadNS(t); return nil }); err != nil || here != self {
		t.Errorf(`Do("") ran in %s (err %v), want %s`, here, err, self)
	}
	sentinel := errors.New("from fn")
	if err := netsetup.Do(ns, func() error { return sentinel }); err != sentinel {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	if err := netsetup.Do(nsName(), func() error { return nil }); !errors.Is(err, netsetup.ErrNoNamespace) {
		t.Errorf("Do(missing) = %v, want ErrNoNamespace", err)
	}

	// Many at once: afterwards no thread of the process may be left in ns,
	// which is what would happen if a thread went back to the pool.
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if err := netsetup.Do(ns, func() error { time.Sleep(time.Millisecond); return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// /proc/self is the main thread, which the runtime cannot discard: a
	// Do that ran there would leave it, and so the process as tools see
	// it, in ns for good.
	if got, err := os.Readlink("/proc/self/ns/net"); err != nil || got != startNS {
		t.Errorf("main thread in %s (err %v), want %s", got, err, startNS)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := threadsIn(want)
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d threads still in %s after Do returned", left, ns)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// threadsIn counts the threads of this process in namespace ns ("net:[N]").
// A thread exits some time after its goroutine did, hence the caller's poll.
func threadsIn(ns string) int {
	tasks, _ := os.ReadDir("/proc/self/task")
	n := 0
	for _, task := range tasks {
		if s, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns/net")); err == nil && s == ns {
			n++
		}
	}
	return n
}

// TestKernelSetSysctls: the sysctls written in one entry into a namespace
// land in that namespace, every one of them, and not in the Kernel's root;
// one that does not exist stops the rest and is named.
func TestKernelSetSysctls(t *testing.T) {
	labtest.RequireRoot(t)
	k, root := newKernel(t)
	tn := nsName()
	deleteNSLater(t, tn)
	if err := k.EnsureNamespace(tn); err != nil {
		t.Fatal(err)
	}
	keys := []string{"net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter", "net/ipv4/conf/default/rp_filter"}
	read := func(ns, key string) string {
		t.Helper()
		return strings.TrimSpace(run(t, "ip", "netns", "exec", ns, "cat", "/proc/sys/"+key))
	}
	rootBefore := make([]string, len(keys))
	for n, key := range keys {
		rootBefore[n] = read(root, key)
	}
	want := []string{"1", "2", "2"}
	var sysctls []netsetup.Sysctl
	for n, key := range keys {
		sysctls = append(sysctls, netsetup.Sysctl{Key: key, Value: want[n]})
	}
	if err := k.SetSysctls(tn, sysctls...); err != nil {
		t.Fatal(err)
	}
	for n, key := range keys {
		if got := read(tn, key); got != want[n] {
			t.Errorf("%s in %s = %s, want %s", key, tn, got, want[n])
		}
		if got := read(root, key); got != rootBefore[n] {
			t.Errorf("%s in the Kernel's root = %s, was %s: written in the wrong namespace", key, got, rootBefore[n])
		}
	}
	err := k.SetSysctls(tn, netsetup.Sysctl{Key: "net/ipv4/conf/nosuch/rp_filter", Value: "1"}, netsetup.Sysctl{Key: "net/ipv4/ip_forward", Value: "0"})
	if err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("SetSysctls with a missing sysctl first = %v, want an error naming it", err)
	}
	if got := read(tn, "net/ipv4/ip_forward"); got != "1" {
		t.Errorf("ip_forward after a failed SetSysctls = %s, want 1 (not written after the failure)", got)
	}
}
