//go:build !linux

package wgmux

import (
	"log/slog"
	"net"
)

func growBuffers(c *net.UDPConn, _ *slog.Logger) {
	c.SetReadBuffer(socketBuffer)
	c.SetWriteBuffer(socketBuffer)
}
