// Package check holds the argument checks and the text forms that
// netsetup.Kernel and netsetuptest.Recorder share, so that the fake refuses
// exactly what the kernel implementation refuses and both name things alike.
package check

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"sync"
)

// Begin starts an Ops call, the same way in netsetup.Kernel and
// netsetuptest.Recorder: it refuses the call if one of its argument checks
// (the results of this package's functions, in argument order) failed,
// with the first failure behind the call's name, and only then takes mu,
// which the caller releases with the returned unlock. A malformed call so
// never waits for the lock, and both implementations refuse it alike.
func Begin(mu sync.Locker, call string, checks ...error) (unlock func(), err error) {
	for _, err := range checks {
		if err != nil {
			return nil, fmt.Errorf("%s: %w", call, err)
		}
	}
	mu.Lock()
	return mu.Unlock, nil
}

// NamespaceName accepts a name for /run/netns: one path element, because
// the name becomes a file name there.
func NamespaceName(name string) error {
	switch {
	case name == "":
		return errors.New("empty namespace name")
	case name == "." || name == "..":
		return fmt.Errorf("namespace name %q is not allowed", name)
	case len(name) > 255:
		return fmt.Errorf("namespace name %q is longer than 255 bytes", name)
	case strings.ContainsAny(name, "/\x00") || hasSpace(name):
		return fmt.Errorf("namespace name %q contains '/', a NUL or white space", name)
	}
	return nil
}

// LinkName accepts what the kernel's dev_valid_name accepts, so that a bad
// name fails with a readable message instead of a bare EINVAL.
func LinkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty link name")
	case len(name) > 15:
		return fmt.Errorf("link name %q is longer than 15 bytes (IFNAMSIZ)", name)
	case name == "." || name == "..":
		return fmt.Errorf("link name %q is not allowed", name)
	case strings.ContainsAny(name, "/:\x00") || hasSpace(name):
		return fmt.Errorf("link name %q contains '/', ':', a NUL or white space", name)
	}
	return nil
}

func hasSpace(s string) bool {
	return strings.ContainsAny(s, " \t\n\v\f\r")
}

// MTU accepts 0 (leave the kernel's default) or a length between the IPv4
// minimum and the largest a veth takes.
func MTU(mtu int) error {
	if mtu != 0 && (mtu < 68 || mtu > 65535) {
		return fmt.Errorf("MTU %d is outside 68..65535 (0 keeps the default)", mtu)
	}
	return nil
}

// VethPeer refuses a veth whose namespace end would be in the root
// namespace as well; inRoot says whether the namespace named for it is the
// root one.
func VethPeer(inRoot bool) error {
	if inRoot {
		return errors.New("the peer end must be in a namespace other than root")
	}
	return nil
}

// AddrPrefix accepts an interface address with its prefix length, such as
// 169.254.7.2/30. 4-in-6 forms are refused because the kernel would store
// them as IPv6 and a later delete written as IPv4 would not find them.
func AddrPrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("invalid address prefix %v", p)
	case p.Addr().Is4In6():
		return fmt.Errorf("address %v is IPv4-mapped IPv6: write it as IPv4", p)
	case p.Addr().Zone() != "":
		return fmt.Errorf("address %v has a zone", p)
	}
	return nil
}

// RouteDst accepts a route destination. It must be masked (10.7.0.0/16, not
// 10.7.0.1/16): the kernel refuses host bits with a bare EINVAL.
func RouteDst(dst netip.Prefix) error {
	if err := AddrPrefix(dst); err != nil {
		return err
	}
	if dst != dst.Masked() {
		return fmt.Errorf("route destination %v has host bits set (did you mean %v?)", dst, dst.Masked())
	}
	return nil
}

// Gateway accepts the zero Addr (a device route) or an address of dst's
// family.
func Gateway(dst netip.Prefix, gw netip.Addr) error {
	if !gw.IsValid() {
		return nil
	}
	if gw.Is4In6() || gw.Zone() != "" {
		return fmt.Errorf("gateway %v: write it as plain IPv4 or IPv6 without a zone", gw)
	}
	if gw.Is4() != dst.Addr().Is4() {
		return fmt.Errorf("gateway %v is not of the same family as %v", gw, dst)
	}
	return nil
}

// SysctlKey accepts a key under /proc/sys/net, written with slashes
// ("net/ipv4/ip_forward"). Only net/ keys are per network namespace: any
// other key written from inside a namespace changes the whole machine.
// Dots are not translated to slashes because interface names may hold dots
// ("net/ipv4/conf/eth0.100/rp_filter").
func SysctlKey(key string) error {
	if !fs.ValidPath(key) || !strings.HasPrefix(key, "net/") {
		return fmt.Errorf("sysctl key %q must be a relative path under net/, such as net/ipv4/ip_forward", key)
	}
	return nil
}

// SysctlValue refuses an empty value, which the kernel would take as a
// no-op write and so hide a caller's mistake.
func SysctlValue(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("empty sysctl value")
	}
	return nil
}

// Where names a link in a namespace as ns/link, or just link in the root
// namespace (ns "").
func Where(ns, link string) string {
	if ns == "" {
		return link
	}
	return ns + "/" + link
}

// In returns "ns " (with a trailing space) or "" for the root namespace, for
// lines and messages about things a namespace holds: routes, sysctls.
func In(ns string) string {
	if ns == "" {
		return ""
	}
	return ns + " "
}

// Route writes a route as the transcript and error messages show it:
// "[ns ]dst [via gw ]dev dev".
func Route(ns string, dst netip.Prefix, dev string, gw netip.Addr) string {
	via := ""
	if gw.IsValid() {
		via = "via " + gw.String() + " "
	}
	return In(ns) + dst.String() + " " + via + "dev " + dev
}
