package netifs

import (
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"
)

func list(skip func(string) bool) ([]Interface, error) {
	links, err := syscall.NetlinkRIB(syscall.RTM_GETLINK, syscall.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	out, byIndex, err := parseLinks(links, skip)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	addrs, err := syscall.NetlinkRIB(syscall.RTM_GETADDR, syscall.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	if err := parseAddrs(addrs, out, byIndex); err != nil {
		return nil, err
	}
	return out, nil
}

// parseLinks reads an RTM_GETLINK dump: the interfaces skip keeps, and
// their positions in it by interface index.
func parseLinks(rib []byte, skip func(string) bool) ([]Interface, map[int32]int, error) {
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the interface list: %w", err)
	}
	var out []Interface
	byIndex := map[int32]int{}
	for _, m := range msgs {
		if m.Header.Type != syscall.RTM_NEWLINK || len(m.Data) < syscall.SizeofIfInfomsg {
			continue
		}
		ifi := (*syscall.IfInfomsg)(unsafe.Pointer(&m.Data[0]))
		name := ""
		for b := m.Data[syscall.SizeofIfInfomsg:]; len(b) >= syscall.SizeofRtAttr; {
			a := (*syscall.RtAttr)(unsafe.Pointer(&b[0]))
			l := int(a.Len)
			if l < syscall.SizeofRtAttr || l > len(b) {
				break
			}
			if a.Type == syscall.IFLA_IFNAME {
				v := b[syscall.SizeofRtAttr:l]
				for len(v) > 0 && v[len(v)-1] == 0 {
					v = v[:len(v)-1]
				}
				name = string(v)
				break
			}
			b = b[min(rtaAlign(l), len(b)):]
		}
		if name == "" || skip(name) {
			continue
		}
		byIndex[ifi.Index] = len(out)
		out = append(out, Interface{Index: int(ifi.Index), Name: name, Up: ifi.Flags&syscall.IFF_UP != 0, Loop: ifi.Flags&syscall.IFF_LOOPBACK != 0})
	}
	return out, byIndex, nil
}

// parseAddrs reads an RTM_GETADDR dump into the interfaces it names.
func parseAddrs(rib []byte, out []Interface, byIndex map[int32]int) error {
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return fmt.Errorf("reading the address list: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Type != syscall.RTM_NEWADDR || len(m.Data) < syscall.SizeofIfAddrmsg {
			continue
		}
		ifa := (*syscall.IfAddrmsg)(unsafe.Pointer(&m.Data[0]))
		i, ok := byIndex[int32(ifa.Index)]
		if !ok {
			continue
		}
		// IFA_LOCAL is the interface's own address on a point-to-point
		// link (IFA_ADDRESS is then the far end); elsewhere only
		// IFA_ADDRESS is there. The standard library reads them alike.
		var local, addr netip.Addr
		for b := m.Data[syscall.SizeofIfAddrmsg:]; len(b) >= syscall.SizeofRtAttr; {
			a := (*syscall.RtAttr)(unsafe.Pointer(&b[0]))
			l := int(a.Len)
			if l < syscall.SizeofRtAttr || l > len(b) {
				break
			}
			if v, ok := netip.AddrFromSlice(b[syscall.SizeofRtAttr:l]); ok {
				switch a.Type {
				case syscall.IFA_LOCAL:
					local = v
				case syscall.IFA_ADDRESS:
					addr = v
				}
			}
			b = b[min(rtaAlign(l), len(b)):]
		}
		if local.IsValid() {
			addr = local
		}
		if addr.IsValid() {
			out[i].Addrs = append(out[i].Addrs, addr)
		}
	}
	return nil
}

func rtaAlign(n int) int { return (n + syscall.RTA_ALIGNTO - 1) &^ (syscall.RTA_ALIGNTO - 1) }
