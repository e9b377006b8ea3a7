package netsetup

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/peerline/peerline/pkg/netsetup/internal/check"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Kernel is the real [Ops]: netlink handles, /run/netns and /proc/sys.
type Kernel struct {
	root string // namespace name meant by "", or "" for the caller's own
	log  *slog.Logger

	mu sync.Mutex // guards the following, and serializes namespace changes
	// handles caches one netlink handle per namespace name ("" for the
	// caller's namespace), with the identity of the namespace it was opened
	// in, so that a namespace deleted and made again behind our back gets a
	// new handle instead of silently acting on the old one.
	handles     map[string]*nsHandle
	runDirReady bool
	closed      bool
}

type nsHandle struct {
	h  *netlink.Handle
	id nsID
}

var _ Ops = (*Kernel)(nil)

// maxDumpTries bounds retries of a netlink dump that the kernel flagged as
// interrupted (NLM_F_DUMP_INTR: the list changed while being read).
const maxDumpTries = 5

// NewKernel returns an Ops acting on the real kernel. rootNS names the
// namespace that "" stands for in Ops calls: "" for the caller's own
// namespace (the daemon on a Pi), or a name under /run/netns (a simulated Pi
// in the lab). log may be nil.
func NewKernel(rootNS string, log *slog.Logger) (*Kernel, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &Kernel{root: rootNS, log: log, handles: map[string]*nsHandle{}}
	if rootNS != "" {
		k.mu.Lock()
		_, err := k.handleLocked("")
		k.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("opening root namespace %s: %w", rootNS, err)
		}
	}
	return k, nil
}

// Close closes the cached netlink handles.
func (k *Kernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for name, nh := range k.handles {
		nh.h.Close()
		delete(k.handles, name)
	}
	k.closed = true
	return nil
}

// target resolves "" to the root namespace's name.
func (k *Kernel) target(ns string) string {
	if ns == "" {
		return k.root
	}
	return ns
}

// handleLocked returns the netlink handle for ns ("" = root), opening it
// inside the namespace on a discarded thread if needed. An absent namespace
// gives an error wrapping ErrNoNamespace.
func (k *Kernel) handleLocked(ns string) (*netlink.Handle, error) {
	if k.closed {
		return nil, net.ErrClosed
	}
	name := k.target(ns)
	if name == "" {
		if nh := k.handles[""]; nh != nil {
			return nh.h, nil
		}
		// The caller's goroutine is in the caller's namespace, so the
		// socket can be opened right here.
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, stepError("opening netlink socket", err)
		}
		k.handles[""] = &nsHandle{h: h}
		return h, nil
	}
	fd, id, err := openNS(name)
	if err != nil {
		k.dropHandleLocked(name)
		return nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	defer unix.Close(fd)
	if nh := k.handles[name]; nh != nil {
		if nh.id == id {
			return nh.h, nil
		}
		k.dropHandleLocked(name)
	}
	var h *netlink.Handle
	err = onDiscardedThread(func() error {
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return err
		}
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, stepError("opening netlink socket in namespace "+name, err)
	}
	k.handles[name] = &nsHandle{h: h, id: id}
	return h, nil
}

// dropHandleLocked closes a cached handle. An open handle keeps its
// namespace alive, with every link in it, after the name is unmounted.
func (k *Kernel) dropHandleLocked(name string) {
	if nh := k.handles[name]; nh != nil {
		nh.h.Close()
		delete(k.handles, name)
	}
}

// notExist is isNotExist plus the netlink library's own "Link not found".
func notExist(err error) bool {
	var lnf netlink.LinkNotFoundError
	return isNotExist(err) || errors.As(err, &lnf)
}

func (k *Kernel) EnsureNamespace(name string) error {
	unlock, err := check.Begin(&k.mu, "creating namespace", check.NamespaceName(name))
	if err != nil {
		return err
	}
	defer unlock()
	if k.closed {
		return net.ErrClosed
	}
	step := "creating namespace " + name
	path := filepath.Join(runDir, name)
	st, err := statNS(path)
	if err != nil {
		return stepError(step, err)
	}
	if st == nsStale {
		k.log.Warn("replacing stale namespace file", "ns", name, "path", path)
		k.dropHandleLocked(name)
		if err := removeNamed(path); err != nil {
			return stepError(step, err)
		}
		st = nsAbsent
	}
	if st == nsAbsent {
		if !k.runDirReady {
			if err := prepareRunDir(); err != nil {
				return stepError(step, err)
			}
			k.runDirReady = true
		}
		if err := createNamed(path); err != nil {
			return stepError(step, err)
		}
	}
	h, err := k.handleLocked(name)
	if err != nil {
		return stepError(step, err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return stepError("finding lo in namespace "+name, err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(lo); err != nil {
			return stepError("setting "+check.Where(name, "lo")+" up", err)
		}
	}
	return nil
}

func (k *Kernel) DeleteNamespace(name string) error {
	unlock, err := check.Begin(&k.mu, "deleting namespace", check.NamespaceName(name))
	if err != nil {
		return err
	}
	defer unlock()
	if k.closed {
		return net.ErrClosed
	}
	step := "deleting namespace " + name
	// Deleting the veths first makes their root ends vanish now: the kernel
	// destroys an unmounted namespace (and so its links) asynchronously,
	// and a re-created tunnel would meet its old root end.
	if h, err := k.handleLocked(name); err == nil {
		links, err := linkList(h)
		if err != nil {
			return stepError(step, err)
		}
		for _, l := range links {
			if l.Type() != "veth" {
				continue
			}
			if err := h.LinkDel(l); err != nil && !notExist(err) {
				return stepError(step+": deleting "+check.Where(name, l.Attrs().Name), err)
			}
		}
	} else if !errors.Is(err, ErrNoNamespace) {
		return stepError(step, err)
	}
	k.dropHandleLocked(name)
	if err := removeNamed(filepath.Join(runDir, name)); err != nil {
		return stepError(step, err)
	}
	return nil
}

func (k *Kernel) Namespaces(prefix string) ([]string, error) {
	names, err := listNamespaces(prefix)
	if err != nil {
		return nil, stepError("listing namespaces", err)
	}
	return names, nil
}

func linkList(h *netlink.Handle) ([]netlink.Link, error) {
	for try := 1; ; try++ {
		links, err := h.LinkList()
		if errors.Is(err, netlink.ErrDumpInterrupted) && try < maxDumpTries {
			continue
		}
		return links, err
	}
}

func (k *Kernel) EnsureVeth(rootEnd, ns, nsEnd string, mtu int) error {
	step := fmt.Sprintf("creating veth %s <-> %s", rootEnd, check.Where(ns, nsEnd))
	unlock, err := check.Begin(&k.mu, step, check.LinkName(rootEnd), check.LinkName(nsEnd), check.MTU(mtu), check.VethPeer(ns == "" || k.target(ns) == k.root))
	if err != nil {
		return err
	}
	defer unlock()
	hr, err := k.handleLocked("")
	if err != nil {
		return stepError(step, err)
	}
	hn, err := k.handleLocked(ns)
	if err != nil {
		return stepError(step, err)
	}

	if l, err := hr.LinkByName(rootEnd); err == nil {
		if l.Type() != "veth" {
			return fmt.Errorf("%s: a %s link named %s exists already; delete it or pick another name", step, l.Type(), rootEnd)
		}
		peer, err := hn.LinkByName(nsEnd)
		if err == nil && peer.Type() == "veth" &&
			peer.Attrs().ParentIndex == l.Attrs().Index && l.Attrs().ParentIndex == peer.Attrs().Index {
			return k.ensureMTULocked(step, hr, l, hn, peer, ns, mtu)
		}
		if err != nil && !notExist(err) {
			return stepError(step, err)
		}
		// Most likely the namespace was made anew and the old one, with
		// the old peer, is kept alive by something.
		k.log.Warn("replacing veth whose peer is elsewhere", "link", rootEnd, "ns", ns, "peer", nsEnd)
		if err := hr.LinkDel(l); err != nil && !notExist(err) {
			return stepError(step+": deleting the old "+rootEnd, err)
		}
	} else if !notExist(err) {
		return stepError(step, err)
	}

	fd, _, err := openNS(k.target(ns))
	if err != nil {
		return stepError(step, err)
	}
	defer unix.Close(fd)
	// NewLinkAttrs, not a LinkAttrs literal: the literal's TxQLen 0 would
	// be sent to the kernel and leave both ends without a queue.
	attrs := netlink.NewLinkAttrs()
	attrs.Name = rootEnd
	attrs.MTU = mtu
	err = hr.LinkAdd(&netlink.Veth{
		LinkAttrs:     attrs,
		PeerName:      nsEnd,
		PeerNamespace: netlink.NsFd(fd),
	})
	if isExist(err) {
		return fmt.Errorf("%s: %w (a link named %s may exist in %s already)", step, err, nsEnd, ns)
	}
	if err != nil {
		return stepError(step, err)
	}
	return nil
}

func (k *Kernel) ensureMTULocked(step string, hr *netlink.Handle, l netlink.Link, hn *netlink.Handle, peer netlink.Link, ns string, mtu int) error {
	if mtu == 0 {
		return nil
	}
	if l.Attrs().MTU != mtu {
		if err := hr.LinkSetMTU(l, mtu); err != nil {
			return stepError(fmt.Sprintf("%s: setting MTU %d", step, mtu), err)
		}
	}
	if peer.Attrs().MTU != mtu {
		if err := hn.LinkSetMTU(peer, mtu); err != nil {
			return stepError(fmt.Sprintf("%s: setting MTU %d on %s", step, mtu, check.Where(ns, peer.Attrs().Name)), err)
		}
	}
	return nil
}

// link finds a link by name; an absent link gives an error wrapping ENODEV.
func link(h *netlink.Handle, name string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if err != nil && notExist(err) {
		return nil, fmt.Errorf("no link named %s: %w", name, unix.ENODEV)
	}
	return l, err
}

func (k *Kernel) LinkUp(ns, name string) error {
	step := "setting " + check.Where(ns, name) + " up"
	unlock, err := check.Begin(&k.mu, step, check.LinkName(name))
	if err != nil {
		return err
	}
	defer unlock()
	h, err := k.handleLocked(ns)
	if err != nil {
		return stepError(step, err)
	}
	l, err := link(h, name)
	if err != nil {
		return stepError(step, err)
	}
	if l.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := h.LinkSetUp(l); err != nil {
		return stepError(step, err)
	}
	return nil
}

func (k *Kernel) DeleteLink(ns, name string) error {
	step := "deleting link " + check.Where(ns, name)
	unlock, err := check.Begin(&k.mu, step, check.LinkName(name))
	if err != nil {
		return err
	}
	defer unlock()
	h, err := k.handleLocked(ns)
	if notExist(err) {
		return nil
	}
	if err != nil {
		return stepError(step, err)
	}
	l, err := h.LinkByName(name)
	if err == nil {
		err = h.LinkDel(l)
	}
	if err != nil && !notExist(err) {
		return stepError(step, err)
	}
	return nil
}

func (k *Kernel) Links(ns, prefix string) ([]string, error) {
	step := "listing links in " + nsLabel(ns)
	k.mu.Lock()
	defer k.mu.Unlock()
	h, err := k.handleLocked(ns)
	if err != nil {
		return nil, stepError(step, err)
	}
	links, err := linkList(h)
	if err != nil {
		return nil, stepError(step, err)
	}
	var names []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			names = append(names, l.Attrs().Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

func nsLabel(ns string) string {
	if ns == "" {
		return "the root namespace"
	}
	return "namespace " + ns
}

// ipNet converts an address prefix, keeping its host bits.
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (k *Kernel) EnsureAddr(ns, linkName string, p netip.Prefix) error {
	step := fmt.Sprintf("adding address %v to %s", p, check.Where(ns, linkName))
	unlock, err := check.Begin(&k.mu, step, check.LinkName(linkName), check.AddrPrefix(p))
	if err != nil {
		return err
	}
	defer unlock()
	h, err := k.handleLocked(ns)
	if err != nil {
		return stepError(step, err)
	}
	l, err := link(h, linkName)
	if err != nil {
		return stepError(step, err)
	}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil && !isExist(err) {
		return stepError(step, err)
	}
	return nil
}

func (k *Kernel) DeleteAddr(ns, linkName string, p netip.Prefix) error {
	step := fmt.Sprintf("deleting address %v from %s", p, check.Where(ns, linkName))
	unlock, err := check.Begin(&k.mu, step, check.LinkName(linkName), check.AddrPrefix(p))
	if err != nil {
		return err
	}
	defer unlock()
	h, err := k.handleLocked(ns)
	if notExist(err) {
		return nil
	}
	if err != nil {
		return stepError(step, err)
	}
	l, err := h.LinkByName(linkName)
	if err == nil {
		err = h.AddrDel(l, &netlink.Addr{IPNet: ipNet(p)})
	}
	if err != nil && !notExist(err) {
		return stepError(step, err)
	}
	return nil
}

func (k *Kernel) EnsureRoute(ns string, dst netip.Prefix, dev string, gw netip.Addr) error {
	step := "adding route " + check.Route(ns, dst, dev, gw)
	unlock, err := check.Begin(&k.mu, step, check.RouteDst(dst), check.LinkName(dev), check.Gateway(dst, gw))
	if err != nil {
		return err
	}
	defer unlock()
	h, err := k.handleLocked(ns)
	if err != nil {
		return stepError(step, err)
	}
	l, err := link(h, dev)
	if err != nil {
		return stepError(step, err)
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(dst), Table: unix.RT_TABLE_MAIN}
	if gw.IsValid() {
		r.Gw = gw.AsSlice()
	} else if dst.Addr().Is4() {
		// What `ip route add DST dev DEV` does; IPv6 has no such scope.
		r.Scope = netlink.SCOPE_LINK
	}
	// Replace, not add: it creates the route or changes one to the same
	// destination in one step, and is a no-op when the route is already so.
	if err := h.RouteReplace(r); err != nil {
		if errors.Is(err, unix.ENETDOWN) {
			return fmt.Errorf("%s: %w (set %s up first)", step, err, check.Where(ns, dev))
		}
		if errors.Is(err, unix.ENETUNREACH) {
			return fmt.Errorf("%s: %w (is %s up, with an address on the gateway's subnet?)", step, err, check.Where(ns, dev))
		}
		return stepError(step, err)
	}
	return nil
}

func (k *Kernel) DeleteRoute(ns string, dst netip.Prefix) error {
	step := "deleting route " + check.In(ns) + dst.String()
	unlock, err := check.Begin(&k.mu, step, check.RouteDst(dst))
	if err != nil {
		return err
	}
	defer unlock()
	h, err := k.handleLocked(ns)
	if notExist(err) {
		return nil
	}
	if err != nil {
		return stepError(step, err)
	}
	// Scope NOWHERE matches routes of any scope. The netlink library writes
	// Route.Scope into the request even on delete, and its zero value
	// (universe) would not match a device route (scope link): ESRCH.
	r := &netlink.Route{Dst: ipNet(dst), Table: unix.RT_TABLE_MAIN, Scope: netlink.SCOPE_NOWHERE}
	// One RTM_DELROUTE removes one route; there may be several to dst
	// (different metrics).
	for range 64 {
		if err := h.RouteDel(r); err != nil {
			if notExist(err) {
				return nil
			}
			return stepError(step, err)
		}
	}
	return fmt.Errorf("%s: still there after 64 deletions", step)
}

func (k *Kernel) SetSysctl(ns, key, value string) error {
	return k.SetSysctls(ns, Sysctl{key, value})
}

func (k *Kernel) SetSysctls(ns string, sysctls ...Sysctl) error {
	step := func(c Sysctl) string { return fmt.Sprintf("setting sysctl %s%s=%s", check.In(ns), c.Key, c.Value) }
	for _, c := range sysctls {
		if err := check.SysctlKey(c.Key); err != nil {
			return fmt.Errorf("%s: %w", step(c), err)
		}
		if err := check.SysctlValue(c.Value); err != nil {
			return fmt.Errorf("%s: %w", step(c), err)
		}
	}
	k.mu.Lock()
	closed := k.closed
	k.mu.Unlock()
	if closed {
		return net.ErrClosed
	}
	// /proc/sys/net shows the namespace of the thread that opens the file,
	// so every file is opened on the one thread Do moved into ns.
	failed := -1
	err := Do(k.target(ns), func() error {
		for n, c := range sysctls {
			if err := writeSysctl(c); err != nil {
				failed = n
				return err
			}
		}
		return nil
	})
	if err == nil {
		return nil
	}
	if failed < 0 {
		// Entering the namespace failed: name the first.
		failed = 0
	}
	if errors.Is(err, os.ErrNotExist) && !errors.Is(err, ErrNoNamespace) {
		return fmt.Errorf("%s: %w (no such sysctl in %s; is the interface there?)", step(sysctls[failed]), err, nsLabel(ns))
	}
	return stepError(step(sysctls[failed]), err)
}

func writeSysctl(c Sysctl) error {
	f, err := os.OpenFile(filepath.Join("/proc/sys", c.Key), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(c.Value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Do runs fn inside ns, with "" meaning this Kernel's root namespace.
func (k *Kernel) Do(ns string, fn func() error) error {
	return Do(k.target(ns), fn)
}
