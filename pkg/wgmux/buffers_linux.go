package wgmux

import (
	"log/slog"
	"net"

	"golang.org/x/sys/unix"
)

// growBuffers raises the socket's buffers past the system limit where the
// daemon may (CAP_NET_ADMIN: SO_RCVBUFFORCE), else as far as the limit
// lets it.
func growBuffers(c *net.UDPConn, log *slog.Logger) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		for _, o := range []struct{ force, plain int }{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.force, socketBuffer) == nil {
				continue
			}
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.plain, socketBuffer); err != nil && log != nil {
				log.Debug("tunnel socket buffer", "err", err)
			}
		}
	})
}
