//go:build !linux

package devsock

import (
	"errors"
	"net"
	"syscall"
)

// Binding to a device is Linux-only; elsewhere every listen fails rather
// than silently serving on all interfaces.
func config(string) *net.ListenConfig {
	return &net.ListenConfig{Control: func(string, string, syscall.RawConn) error {
		return errors.ErrUnsupported
	}}
}
