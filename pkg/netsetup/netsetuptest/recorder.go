// Package netsetuptest provides Recorder, a fake [netsetup.Ops] that keeps a
// model of the namespaces, links, addresses, routes and sysctls it was asked
// for and a transcript of the changes, so that the supervisor's tests can
// check what it did as text, without root and without a kernel.
//
// # Transcript
//
// One line per change, in call order. A namespace's link is written ns/link,
// a root link bare; a route or sysctl in a namespace has the namespace as its
// first operand:
//
//	ns add pl-7
//	ns del pl-7
//	veth add plv7 <-> pl-7/veth0 mtu 1420   (no "mtu" part when mtu is 0)
//	link set plv7 mtu 1380                  (EnsureVeth of a pair with another MTU)
//	link up pl-7/veth0
//	link del plv7
//	addr add pl-7/veth0 169.254.7.2/30
//	addr del pl-7/veth0 169.254.7.2/30
//	route add 10.7.0.0/16 dev plv7
//	route add pl-7 0.0.0.0/0 via 169.254.7.1 dev veth0
//	route replace 10.7.0.0/16 dev plv8      (EnsureRoute of a route that differs)
//	route del pl-7 0.0.0.0/0
//	sysctl pl-7 net/ipv4/ip_forward=1
//	sysctl net/ipv4/ip_forward=1            (root namespace)
//	do pl-7                                 (Do; "do" alone for the root)
//
// Only changes are recorded: an Ensure of what is already there, or a Delete
// of what is not, records nothing (Do, an action rather than a state, is
// recorded every time). So a second run of the same steps gives an
// empty transcript, which is how a test checks that a reconcile is
// idempotent, and a transcript reads as the diff between two states. The one
// model gap is sysctls: the Recorder cannot know a sysctl's value before the
// first SetSysctl, so the first write to a key is always recorded.
//
// # Model
//
// The Recorder refuses what the kernel refuses, with errors that wrap the
// same errno or [netsetup.ErrNoNamespace], so that the supervisor's order of
// steps is checked too: links, addresses, routes and sysctls need their
// namespace; addresses and routes need their link; a route needs its device
// up, and a gateway inside a subnet of an address on that device. It also
// follows the kernel's cascades, silently (they are not calls): a new
// namespace has lo, up; deleting a link deletes its veth peer and the routes
// through either; deleting a namespace deletes the veth pairs with an end in
// it. The root namespace starts empty: the Recorder knows nothing of the
// machine's own links.
package netsetuptest

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/peerline/peerline/pkg/netsetup"
	"github.com/peerline/peerline/pkg/netsetup/internal/check"
)

// Recorder is a fake [netsetup.Ops]. Its zero value is not ready: use
// [NewRecorder]. It is safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex // guards the following
	lines []string
	nss   map[string]*nsModel // "" is the root namespace
	fails []injected
}

type nsModel struct {
	links   map[string]*linkModel
	routes  map[netip.Prefix]routeModel
	sysctls map[string]string
}

type linkModel struct {
	up     bool
	mtu    int
	addrs  map[netip.Prefix]bool
	veth   bool
	peerNS string
	peer   string
}

type routeModel struct {
	dev string
	gw  netip.Addr
}

type injected struct {
	prefix string
	err    error
}

var _ netsetup.Ops = (*Recorder)(nil)

// defaultMTU is what a new veth gets when no MTU is asked for, as in Linux.
const defaultMTU = 1500

// NewRecorder returns a Recorder with an empty root namespace.
func NewRecorder() *Recorder {
	return &Recorder{nss: map[string]*nsModel{"": newNS()}}
}

func newNS() *nsModel {
	return &nsModel{
		links:   map[string]*linkModel{},
		routes:  map[netip.Prefix]routeModel{},
		sysctls: map[string]string{},
	}
}

// Take returns the transcript recorded since the last Take, one change a
// line, without a final newline; "" if nothing changed.
func (r *Recorder) Take() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := strings.Join(r.lines, "\n")
	r.lines = nil
	return s
}

// FailNext makes the next call whose transcript line would start with prefix
// (say "veth add plv7" or "route add pl-7") fail with an error wrapping err,
// changing and recording nothing. It matches whether or not the call would
// have changed anything. Each FailNext fires once.
func (r *Recorder) FailNext(prefix string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fails = append(r.fails, injected{prefix, err})
}

// State returns the whole model as text, sorted, for tests that care where
// a sequence of calls ends rather than how:
//
//	link plv7 up mtu 1420 peer pl-7/veth0
//	addr plv7 169.254.7.1/30
//	route 10.7.0.0/16 dev plv7
//	ns pl-7
//	link pl-7/lo up
//	link pl-7/veth0 up mtu 1420 peer plv7
//	...
//
// The root namespace comes first, then each namespace after its "ns" line.
func (r *Recorder) State() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, ns := range slices.Sorted(maps.Keys(r.nss)) {
		m := r.nss[ns]
		if ns != "" {
			fmt.Fprintf(&b, "ns %s\n", ns)
		}
		for _, name := range slices.Sorted(maps.Keys(m.links)) {
			l := m.links[name]
			fmt.Fprintf(&b, "link %s", check.Where(ns, name))
			if l.up {
				b.WriteString(" up")
			}
			if name != "lo" {
				fmt.Fprintf(&b, " mtu %d", l.mtu)
			}
			if l.veth {
				fmt.Fprintf(&b, " peer %s", check.Where(l.peerNS, l.peer))
			}
			b.WriteString("\n")
			for _, p := range slices.SortedFunc(maps.Keys(l.addrs), comparePrefix) {
				fmt.Fprintf(&b, "addr %s %v\n", check.Where(ns, name), p)
			}
		}
		for _, dst := range slices.SortedFunc(maps.Keys(m.routes), comparePrefix) {
			rt := m.routes[dst]
			fmt.Fprintf(&b, "route %s\n", check.Route(ns, dst, rt.dev, rt.gw))
		}
		for _, key := range slices.Sorted(maps.Keys(m.sysctls)) {
			fmt.Fprintf(&b, "sysctl %s%s=%s\n", check.In(ns), key, m.sysctls[key])
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// beginLocked checks injected failures for line. It returns the error to
// return, or nil to go on.
func (r *Recorder) beginLocked(line string) error {
	for i, f := range r.fails {
		if strings.HasPrefix(line, f.prefix) {
			r.fails = slices.Delete(r.fails, i, i+1)
			return fmt.Errorf("%s: %w", line, f.err)
		}
	}
	return nil
}

func (r *Recorder) recordLocked(line string) {
	r.lines = append(r.lines, line)
}

// nsLocked returns the model of ns, or an error wrapping ErrNoNamespace.
func (r *Recorder) nsLocked(line, ns string) (*nsModel, error) {
	if m := r.nss[ns]; m != nil {
		return m, nil
	}
	return nil, fmt.Errorf("%s: namespace %s: %w", line, ns, netsetup.ErrNoNamespace)
}

func (r *Recorder) linkLocked(line, ns, name string) (*linkModel, error) {
	m, err := r.nsLocked(line, ns)
	if err != nil {
		return nil, err
	}
	if l := m.links[name]; l != nil {
		return l, nil
	}
	return nil, fmt.Errorf("%s: no link named %s: %w", line, check.Where(ns, name), syscall.ENODEV)
}

func (r *Recorder) EnsureNamespace(name string) error {
	line := "ns add " + name
	unlock, err := check.Begin(&r.mu, line, check.NamespaceName(name))
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.beginLocked(line); err != nil {
		return err
	}
	if r.nss[name] != nil {
		return nil
	}
	m := newNS()
	m.links["lo"] = &linkModel{up: true, mtu: 65536, addrs: map[netip.Prefix]bool{}}
	r.nss[name] = m
	r.recordLocked(line)
	return nil
}

func (r *Recorder) DeleteNamespace(name string) error {
	line := "ns del " + name
	unlock, err := check.Begin(&r.mu, line, check.NamespaceName(name))
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.beginLocked(line); err != nil {
		return err
	}
	m := r.nss[name]
	if m == nil {
		return nil
	}
	for lname := range m.links {
		r.removeLinkLocked(name, lname)
	}
	delete(r.nss, name)
	r.recordLocked(line)
	return nil
}

func (r *Recorder) Namespaces(prefix string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for ns := range r.nss {
		if ns != "" && strings.HasPrefix(ns, prefix) {
			names = append(names, ns)
		}
	}
	slices.Sort(names)
	return names, nil
}

// removeLinkLocked removes a link, its veth peer and the routes through
// either.
func (r *Recorder) removeLinkLocked(ns, name string) {
	m := r.nss[ns]
	l := m.links[name]
	if l == nil {
		return
	}
	delete(m.links, name)
	for dst, rt := range m.routes {
		if rt.dev == name {
			delete(m.routes, dst)
		}
	}
	if l.veth {
		if pm := r.nss[l.peerNS]; pm != nil && pm.links[l.peer] != nil {
			r.removeLinkLocked(l.peerNS, l.peer)
		}
	}
}

func (r *Recorder) EnsureVeth(rootEnd, ns, nsEnd string, mtu int) error {
	line := fmt.Sprintf("veth add %s <-> %s", rootEnd, check.Where(ns, nsEnd))
	if mtu != 0 {
		line += " mtu " + strconv.Itoa(mtu)
	}
	unlock, err := check.Begin(&r.mu, line, check.LinkName(rootEnd), check.LinkName(nsEnd), check.MTU(mtu), check.VethPeer(ns == ""))
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.beginLocked(line); err != nil {
		return err
	}
	m, err := r.nsLocked(line, ns)
	if err != nil {
		return err
	}
	root := r.nss[""]
	if l := root.links[rootEnd]; l != nil {
		if !l.veth {
			return fmt.Errorf("%s: a link named %s exists and is not a veth: %w", line, rootEnd, syscall.EEXIST)
		}
		if l.peerNS == ns && l.peer == nsEnd {
			if mtu != 0 && l.mtu != mtu {
				l.mtu = mtu
				r.recordLocked(fmt.Sprintf("link set %s mtu %d", rootEnd, mtu))
			}
			if p := m.links[nsEnd]; mtu != 0 && p.mtu != mtu {
				p.mtu = mtu
				r.recordLocked(fmt.Sprintf("link set %s mtu %d", check.Where(ns, nsEnd), mtu))
			}
			return nil
		}
		r.removeLinkLocked("", rootEnd)
		r.recordLocked("link del " + rootEnd)
	}
	if m.links[nsEnd] != nil {
		return fmt.Errorf("%s: a link named %s exists: %w", line, check.Where(ns, nsEnd), syscall.EEXIST)
	}
	if mtu == 0 {
		mtu = defaultMTU
	}
	root.links[rootEnd] = &linkModel{mtu: mtu, addrs: map[netip.Prefix]bool{}, veth: true, peerNS: ns, peer: nsEnd}
	m.links[nsEnd] = &linkModel{mtu: mtu, addrs: map[netip.Prefix]bool{}, veth: true, peerNS: "", peer: rootEnd}
	r.recordLocked(line)
	return nil
}

func (r *Recorder) LinkUp(ns, name string) error {
	line := "link up " + check.Where(ns, name)
	unlock, err := check.Begin(&r.mu, line, check.LinkName(name))
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.beginLocked(line); err != nil {
		return err
	}
	l, err := r.linkLocked(line, ns, name)
	if err != nil {
		return err
	}
	if !l.up {
		l.up = true
		r.recordLocked(line)
	}
	return nil
}

func (r *Recorder) DeleteLink(ns, name string) error {
	line := "link del " + check.Where(ns, name)
	unlock, err := check.Begin(&r.mu, line, check.LinkName(name))
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.beginLocked(line); err != nil {
		return err
	}
	if m := r.nss[ns]; m != nil && m.links[name] != nil {
		r.removeLinkLocked(ns, name)
		r.recordLocked(line)
	}
	return nil
}

func (r *Recorder) Links(ns, prefix string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, err := r.nsLocked("listing links", ns)
	if err != nil {
		return nil, err
	}
	var names []string
	for name := range m.links {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

func (r *Recorder) EnsureAddr(ns, link string, p netip.Prefix) error {
	line := fmt.Sprintf("addr add %s %v", check.Where(ns, link), p)
	unlock, err := check.Begin(&r.mu, line, check.LinkName(link), check.AddrPrefix(p))
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.beginLocked(line); err != nil {
		return err
	}
	l, err := r.linkLocked(line, ns, link)
	if err != nil {
		return err
	}
	if !l.addrs[p] {
		l.addrs[p] = true
		r.recordLocked(line)
	}
	return nil
}

func (r *Recorder) DeleteAddr(ns, link string, p netip.Prefix) error {
	line := fmt.Sprintf("addr del %s %v", check.Where(ns, link), p)
	unlock, err := check.Begin(&r.mu, line, check.LinkName(link), check.AddrPrefix(p))
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.beginLocked(line); err != nil {
		return err
	}
	if m := r.nss[ns]; m != nil {
		if l := m.links[link]; l != nil && l.addrs[p] {
			delete(l.addrs, p)
			r.recordLocked(line)
		}
	}
	return nil
}

func (r *Recorder) EnsureRoute(ns string, dst netip.Prefix, dev string, gw netip.Addr) error {
	route := check.Route(ns, dst, dev, gw)
	line := "route add " + route
	unlock, err := check.Begin(&r.mu, line, check.RouteDst(dst), check.LinkName(dev), check.Gateway(dst, gw))
	if err != nil {
		return err
	}
	defer unlock()
	old, exists := routeModel{}, false
	if m := r.nss[ns]; m != nil {
		old, exists = m.routes[dst]
	}
	if exists && old != (routeModel{dev, gw}) {
		line = "route replace " + route
	}
	if err := r.beginLocked(line); err != nil {
		return err
	}
	l, err := r.linkLocked(line, ns, dev)
	if err != nil {
		return err
	}
	if !l.up {
		return fmt.Errorf("%s: device for nexthop is not up: %w", line, syscall.ENETDOWN)
	}
	if gw.IsValid() && !slices.ContainsFunc(slices.Collect(maps.Keys(l.addrs)), func(p netip.Prefix) bool {
		return p.Masked().Contains(gw)
	}) {
		return fmt.Errorf("%s: gateway not on a subnet of %s: %w", line, check.Where(ns, dev), syscall.ENETUNREACH)
	}
	if exists && old == (routeModel{dev, gw}) {
		return nil
	}
	r.nss[ns].routes[dst] = routeModel{dev, gw}
	r.recordLocked(line)
	return nil
}

func (r *Recorder) DeleteRoute(ns string, dst netip.Prefix) error {
	line := "route del " + check.In(ns) + dst.String()
	unlock, err := check.Begin(&r.mu, line, check.RouteDst(dst))
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.beginLocked(line); err != nil {
		return err
	}
	if m := r.nss[ns]; m != nil {
		if _, ok := m.routes[dst]; ok {
			delete(m.routes, dst)
			r.recordLocked(line)
		}
	}
	return nil
}

// SetSysctls records each as SetSysctl does, after checking them all.
func (r *Recorder) SetSysctls(ns string, sysctls ...netsetup.Sysctl) error {
	for _, c := range sysctls {
		line := fmt.Sprintf("sysctl %s%s=%s", check.In(ns), c.Key, c.Value)
		for _, err := range []error{check.SysctlKey(c.Key), check.SysctlValue(c.Value)} {
			if err != nil {
				return fmt.Errorf("%s: %w", line, err)
			}
		}
	}
	for _, c := range sysctls {
		if err := r.SetSysctl(ns, c.Key, c.Value); err != nil {
			return err
		}
	}
	return nil
}

func (r *Recorder) SetSysctl(ns, key, value string) error {
	line := fmt.Sprintf("sysctl %s%s=%s", check.In(ns), key, value)
	unlock, err := check.Begin(&r.mu, line, check.SysctlKey(key), check.SysctlValue(value))
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.beginLocked(line); err != nil {
		return err
	}
	m, err := r.nsLocked(line, ns)
	if err != nil {
		return err
	}
	if v, ok := m.sysctls[key]; !ok || v != value {
		m.sysctls[key] = value
		r.recordLocked(line)
	}
	return nil
}

// Do records "do NS" and runs fn on the calling goroutine, in the test's own
// namespace: the Recorder has no namespaces to enter.
func (r *Recorder) Do(ns string, fn func() error) error {
	line := strings.TrimSpace("do " + ns)
	r.mu.Lock()
	if err := r.beginLocked(line); err != nil {
		r.mu.Unlock()
		return err
	}
	if _, err := r.nsLocked(line, ns); err != nil {
		r.mu.Unlock()
		return err
	}
	r.recordLocked(line)
	r.mu.Unlock()
	return fn()
}

// Close does nothing: the Recorder holds nothing.
func (r *Recorder) Close() error { return nil }

// AddLink models a link that exists without an Ops call having made it: the
// phone port of the machine, or the TUN a WireGuard device creates. It is
// recorded as "link add", down, with the default MTU.
func (r *Recorder) AddLink(ns, name string) error {
	line := "link add " + check.Where(ns, name)
	unlock, err := check.Begin(&r.mu, line, check.LinkName(name))
	if err != nil {
		return err
	}
	defer unlock()
	m, ok := r.nss[ns]
	if !ok {
		return fmt.Errorf("%s: %w", line, netsetup.ErrNoNamespace)
	}
	if _, ok := m.links[name]; ok {
		return fmt.Errorf("%s: %w", line, syscall.EEXIST)
	}
	m.links[name] = &linkModel{mtu: defaultMTU, addrs: map[netip.Prefix]bool{}}
	r.recordLocked(line)
	return nil
}

// RemoveLink models a link vanishing on its own, as a TUN does when its
// process dies. It records nothing: no Ops call did it.
func (r *Recorder) RemoveLink(ns, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.nss[ns]; ok {
		delete(m.links, name)
		for dst, rt := range m.routes {
			if rt.dev == name {
				delete(m.routes, dst)
			}
		}
	}
}
