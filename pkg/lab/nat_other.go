//go:build !linux

package lab

import "errors"

func flushConntrack(h *Host) error { return errors.ErrUnsupported }
