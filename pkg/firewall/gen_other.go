//go:build !linux

package firewall

import "errors"

// Generation needs Linux's netlink; elsewhere the check lists the table.
func (l Loader) Generation(ns string) (uint32, error) { return 0, errors.ErrUnsupported }
