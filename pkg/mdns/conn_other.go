//go:build !linux

package mdns

import "errors"

// Binding a socket to an interface is Linux-only; elsewhere the responder
// answers nowhere rather than on every interface.
func listen(string) (conn, error) { return nil, errors.ErrUnsupported }
