//go:build !linux

package netifs

import (
	"fmt"
	"net"
	"net/netip"
)

func list(skip func(string) bool) ([]Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	var out []Interface
	for _, i := range ifs {
		if skip(i.Name) {
			continue
		}
		it := Interface{Index: i.Index, Name: i.Name, Up: i.Flags&net.FlagUp != 0, Loop: i.Flags&net.FlagLoopback != 0}
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				it.Addrs = append(it.Addrs, p.Addr())
			}
		}
		out = append(out, it)
	}
	return out, nil
}
