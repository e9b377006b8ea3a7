//go:build !linux

package firewall

import "errors"

// nf_tables is Linux's: elsewhere there is nothing to load.

func (Loader) loadNetlink(string, Ruleset) error           { return errors.ErrUnsupported }
func (Loader) changeNetlink(string, nodeDelta, Node) error { return errors.ErrUnsupported }
func (Loader) deleteNetlink(string) error                  { return errors.ErrUnsupported }
