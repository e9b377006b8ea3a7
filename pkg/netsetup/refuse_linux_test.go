//go:build linux

package netsetup_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/peerline/peerline/pkg/netsetup"
	"github.com/peerline/peerline/pkg/netsetup/netsetuptest"
)

// TestBadArgumentsRefusedAlike: the Kernel and the Recorder refuse a
// malformed call with the same reason, before touching anything (so no root
// is needed: the Kernel opens no netlink socket for it).
func TestBadArgumentsRefusedAlike(t *testing.T) {
	k, err := netsetup.NewKernel("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	r := netsetuptest.NewRecorder()
	unmasked := netip.MustParsePrefix("10.7.0.1/16")
	mapped := netip.MustParsePrefix("::ffff:10.0.1.2/126")
	calls := []struct {
		name string
		do   func(netsetup.Ops) error
	}{
		{"namespace with slash", func(o netsetup.Ops) error { return o.EnsureNamespace("a/b") }},
		{"delete empty namespace", func(o netsetup.Ops) error { return o.DeleteNamespace("") }},
		{"long link name", func(o netsetup.Ops) error { return o.LinkUp("", "abcdefghijklmnop") }},
		{"delete link with colon", func(o netsetup.Ops) error { return o.DeleteLink("pl-7", "eth0:1") }},
		{"veth peer in root", func(o netsetup.Ops) error { return o.EnsureVeth("plv7", "", "veth0", 0) }},
		{"veth bad name and tiny MTU: first reason", func(o netsetup.Ops) error { return o.EnsureVeth("plv7", "pl-7", "a b", 10) }},
		{"tiny MTU", func(o netsetup.Ops) error { return o.EnsureVeth("plv7", "pl-7", "veth0", 10) }},
		{"4-in-6 address", func(o netsetup.Ops) error { return o.EnsureAddr("", "eth0", mapped) }},
		{"delete 4-in-6 address", func(o netsetup.Ops) error { return o.DeleteAddr("", "eth0", mapped) }},
		{"unmasked route", func(o netsetup.Ops) error { return o.EnsureRoute("", unmasked, "plv7", netip.Addr{}) }},
		{"delete unmasked route", func(o netsetup.Ops) error { return o.DeleteRoute("pl-7", unmasked) }},
		{"sysctl outside net/", func(o netsetup.Ops) error { return o.SetSysctl("", "kernel/panic", "1") }},
		{"empty sysctl value", func(o netsetup.Ops) error { return o.SetSysctl("", "net/ipv4/ip_forward", " ") }},
	}
	for _, c := range calls {
		ke, re := c.do(k), c.do(r)
		if ke == nil || re == nil {
			t.Errorf("%s: kernel %v, recorder %v; want both refused", c.name, ke, re)
			continue
		}
		// Each names the call its own way; the reason behind is shared.
		if kr, rr := errors.Unwrap(ke), errors.Unwrap(re); kr == nil || rr == nil || kr.Error() != rr.Error() {
			t.Errorf("%s: kernel %q, recorder %q; want the same reason", c.name, ke, re)
		}
	}
	if got := r.Take(); got != "" {
		t.Errorf("refused calls recorded %q", got)
	}
}
