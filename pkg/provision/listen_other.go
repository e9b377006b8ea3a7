//go:build !linux

package provision

import (
	"context"
	"errors"
	"net"
)

// listenOnDevice needs SO_BINDTODEVICE, which only Linux has.
func listenOnDevice(context.Context, string, string, string) (net.Listener, error) {
	return nil, errors.ErrUnsupported
}
