//go:build !linux

package lab

import "errors"

func openSwitchPort(h *Host, ifname string) (switchPort, error) { return nil, errors.ErrUnsupported }
