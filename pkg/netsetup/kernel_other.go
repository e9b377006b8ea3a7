//go:build !linux

package netsetup

import (
	"errors"
	"log/slog"
	"net/netip"
)

// Kernel is the real [Ops]. Network namespaces exist only on Linux, so
// elsewhere every method fails with errors.ErrUnsupported; the type exists so
// that code using it builds (and vets) on a developer's Mac.
type Kernel struct{}

var _ Ops = (*Kernel)(nil)

// NewKernel fails with errors.ErrUnsupported: network namespaces are Linux
// only.
func NewKernel(rootNS string, log *slog.Logger) (*Kernel, error) {
	return nil, errors.ErrUnsupported
}

// Do fails with errors.ErrUnsupported, except for ns "" (the caller's own
// namespace), where it runs fn.
func Do(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	return errors.ErrUnsupported
}

func (*Kernel) EnsureNamespace(string) error                 { return errors.ErrUnsupported }
func (*Kernel) DeleteNamespace(string) error                 { return errors.ErrUnsupported }
func (*Kernel) Namespaces(string) ([]string, error)          { return nil, errors.ErrUnsupported }
func (*Kernel) EnsureVeth(string, string, string, int) error { return errors.ErrUnsupported }
func (*Kernel) LinkUp(string, string) error                  { return errors.ErrUnsupported }
func (*Kernel) DeleteLink(string, string) error              { return errors.ErrUnsupported }
func (*Kernel) Links(string, string) ([]string, error)       { return nil, errors.ErrUnsupported }
func (*Kernel) EnsureAddr(string, string, netip.Prefix) error {
	return errors.ErrUnsupported
}
func (*Kernel) DeleteAddr(string, string, netip.Prefix) error {
	return errors.ErrUnsupported
}
func (*Kernel) EnsureRoute(string, netip.Prefix, string, netip.Addr) error {
	return errors.ErrUnsupported
}
func (*Kernel) DeleteRoute(string, netip.Prefix) error { return errors.ErrUnsupported }
func (*Kernel) SetSysctl(string, string, string) error { return errors.ErrUnsupported }
func (*Kernel) SetSysctls(string, ...Sysctl) error     { return errors.ErrUnsupported }
func (*Kernel) Do(string, func() error) error          { return errors.ErrUnsupported }
func (*Kernel) Close() error                           { return nil }
