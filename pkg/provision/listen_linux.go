package provision

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenOnDevice opens a listener that only sees traffic of device, so a
// phone-port service never answers on the uplink, whatever addresses the
// node has.
func listenOnDevice(ctx context.Context, network, addr, device string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, device)
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("binding to %s (needs CAP_NET_RAW or root): %w", device, serr)
		}
		return nil
	}}
	return lc.Listen(ctx, network, addr)
}
