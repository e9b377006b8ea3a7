// Package netsetup builds the per-tunnel plumbing of a peerline node: a
// network namespace per peer, a veth pair from the daemon's root namespace
// into it, addresses, routes and sysctls.
//
// The supervisor drives it through [Ops], so that its tests can run against
// [github.com/peerline/peerline/pkg/netsetup/netsetuptest.Recorder] and
// compare transcripts as text, while the daemon uses [Kernel]. Every Ensure
// and Delete is idempotent (EEXIST on add and ENOENT on delete count as
// success), because the supervisor reconciles after crashes and restarts by
// simply running its steps again.
//
// # The namespace rule
//
// A Go program's goroutines hop between OS threads, and a network namespace
// belongs to a thread. Moving a shared goroutine's thread into a namespace
// and back is how namespace code leaks: a panic, an early return or a failed
// setns back leaves the thread, and whichever goroutine runs on it next, in
// the wrong namespace. So this package never does it:
//
//   - netlink goes through one handle per namespace, whose socket is opened
//     once inside that namespace; a socket keeps its namespace for life.
//   - The few things that must run inside a namespace (creating a TUN,
//     writing /proc/sys/net, opening a socket, creating a namespace) go
//     through [Do], which runs them on a fresh goroutine locked to its thread
//     and never unlocks it, so the Go runtime throws the thread away when the
//     goroutine ends.
//
// Even the netlink handles are opened on such a thread rather than with
// netlink.NewHandleAt, because NewHandleAt switches the calling thread into
// the namespace and back. And such a thread is never the process's main
// thread, which the runtime cannot throw away: it would park it for good,
// still in the namespace, and /proc/PID/ns/net (the main thread's) would
// then name that namespace.
//
// # Root
//
// The daemon runs in some namespace it calls root: the real root on a Pi, a
// simulated Pi's namespace in the lab. Ops calls take the namespace as a
// name under /run/netns, and "" means that root. [NewKernel] takes the root
// as a name too, so that lab tests never touch the machine's real root.
package netsetup

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// Ops is the network plumbing the supervisor asks for. Namespace arguments
// are names under /run/netns; "" is the implementation's root namespace.
// Link names are at most 15 bytes.
//
// All methods are idempotent: Ensure leaves what is already as asked, and
// Delete of something absent (including something inside an absent
// namespace) succeeds. Other calls on an absent namespace fail with an error
// wrapping [ErrNoNamespace].
type Ops interface {
	// EnsureNamespace creates the named namespace, replacing a stale
	// /run/netns file left by a crash, and brings its loopback up (a
	// namespace without lo up cannot talk to itself, which breaks local
	// sockets in surprising ways).
	EnsureNamespace(name string) error
	// DeleteNamespace deletes the named namespace and the veth pairs that
	// have an end in it, at once rather than when the kernel gets round to
	// destroying the namespace.
	DeleteNamespace(name string) error
	// Namespaces lists the names under /run/netns that start with prefix,
	// sorted, stale files included (so that cleanup finds them).
	Namespaces(prefix string) ([]string, error)

	// EnsureVeth makes a veth pair with rootEnd in the root namespace and
	// nsEnd in namespace ns. The pair is created with its peer already in
	// ns, so nsEnd never appears in the root namespace, where every tunnel's
	// "veth0" would collide. An existing pair is kept (mtu > 0 is applied to
	// both ends); a veth named rootEnd whose peer is not ns/nsEnd is
	// replaced; any other link named rootEnd is an error.
	EnsureVeth(rootEnd, ns, nsEnd string, mtu int) error
	// LinkUp sets a link administratively up.
	LinkUp(ns, name string) error
	// DeleteLink deletes a link; deleting one end of a veth deletes both.
	DeleteLink(ns, name string) error
	// Links lists the names of the links in ns that start with prefix,
	// sorted.
	Links(ns, prefix string) ([]string, error)

	// EnsureAddr adds an address such as 169.254.7.2/30 to a link.
	EnsureAddr(ns, link string, p netip.Prefix) error
	// DeleteAddr removes an address from a link.
	DeleteAddr(ns, link string, p netip.Prefix) error

	// EnsureRoute makes the main table's route to dst go out of dev, through
	// gw unless gw is the zero Addr (a device route), replacing a route to
	// dst that differs. dst must be masked. The device must be up and, for
	// a gateway route, the gateway reachable through it: the kernel refuses
	// otherwise.
	EnsureRoute(ns string, dst netip.Prefix, dev string, gw netip.Addr) error
	// DeleteRoute removes the main table's routes to dst.
	DeleteRoute(ns string, dst netip.Prefix) error

	// SetSysctl writes value to /proc/sys/<key> as seen from inside ns; key
	// is under net/ ("net/ipv4/ip_forward"), as only those are per
	// namespace.
	SetSysctl(ns, key, value string) error
	// SetSysctls is SetSysctl for each of sysctls in order, entering ns
	// once (a peer's three cost three threads otherwise). All are checked
	// before any is written; it stops at the first that fails.
	SetSysctls(ns string, sysctls ...Sysctl) error

	// Do runs fn inside namespace ns, like the package-level [Do] but with
	// "" meaning this implementation's root.
	Do(ns string, fn func() error) error

	// Close releases what the implementation holds (netlink sockets). It
	// changes nothing in the kernel and is idempotent.
	Close() error
}

// Sysctl is one /proc/sys/<Key> = Value for SetSysctls.
type Sysctl struct{ Key, Value string }

// ErrNoNamespace is wrapped by errors about a namespace that does not exist
// (or is only a stale /run/netns file). Call EnsureNamespace first.
var ErrNoNamespace = errors.New("no such network namespace")

// isExist tells whether err means "already there", which an Ensure treats as
// success.
func isExist(err error) bool {
	return errors.Is(err, syscall.EEXIST)
}

// isNotExist tells whether err means "not there", which a Delete treats as
// success. The kernel says so in several ways: ENOENT (address or
// namespace file), ESRCH (route), ENODEV (link), EADDRNOTAVAIL (address on
// a live link).
func isNotExist(err error) bool {
	for _, e := range []error{syscall.ENOENT, syscall.ESRCH, syscall.ENODEV, syscall.EADDRNOTAVAIL, ErrNoNamespace} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// stepError wraps err with the step that failed and, for a permission error,
// with what to do about it.
func stepError(step string, err error) error {
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("%s: %w (are you root? CAP_NET_ADMIN is needed, and CAP_SYS_ADMIN to create or delete a namespace)", step, err)
	}
	return fmt.Errorf("%s: %w", step, err)
}
