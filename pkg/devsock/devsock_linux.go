package devsock

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

func config(ifname string) *net.ListenConfig {
	return &net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("binding to %s (needs CAP_NET_RAW or root): %w", ifname, serr)
		}
		return nil
	}}
}
