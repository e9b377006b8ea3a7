package netsetuptest

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/peerline/peerline/pkg/netsetup"
)

var (
	rootAddr = netip.MustParsePrefix("169.254.7.1/30")
	nsAddr   = netip.MustParsePrefix("169.254.7.2/30")
	remote   = netip.MustParsePrefix("10.7.0.0/16")
	dflt     = netip.MustParsePrefix("0.0.0.0/0")
	gw       = netip.MustParseAddr("169.254.7.1")
)

// bringUp is what a supervisor would do for tunnel 7.
func bringUp(o netsetup.Ops) error {
	for _, step := range []func() error{
		func() error { return o.EnsureNamespace("pl-7") },
		func() error { return o.EnsureVeth("plv7", "pl-7", "veth0", 1420) },
		func() error { return o.LinkUp("", "plv7") },
		func() error { return o.LinkUp("pl-7", "veth0") },
		func() error { return o.EnsureAddr("", "plv7", rootAddr) },
		func() error { return o.EnsureAddr("pl-7", "veth0", nsAddr) },
		func() error { return o.EnsureRoute("", remote, "plv7", netip.Addr{}) },
		func() error { return o.EnsureRoute("pl-7", dflt, "veth0", gw) },
		func() error { return o.SetSysctl("pl-7", "net/ipv4/ip_forward", "1") },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

const bringUpTranscript = `
ns add pl-7
veth add plv7 <-> pl-7/veth0 mtu 1420
link up plv7
link up pl-7/veth0
addr add plv7 169.254.7.1/30
addr add pl-7/veth0 169.254.7.2/30
route add 10.7.0.0/16 dev plv7
route add pl-7 0.0.0.0/0 via 169.254.7.1 dev veth0
sysctl pl-7 net/ipv4/ip_forward=1`

func TestRecorderStates(t *testing.T) {
	r := NewRecorder()
	steps := []struct {
		name string
		do   func() error
		want string
	}{
		{"bring up", func() error { return bringUp(r) }, bringUpTranscript},
		{"bring up again is silent", func() error { return bringUp(r) }, ""},
		{"do", func() error {
			if err := r.Do("pl-7", func() error { return nil }); err != nil {
				return err
			}
			return r.Do("", func() error { return nil })
		}, "do pl-7\ndo"},
		{"new MTU", func() error { return r.EnsureVeth("plv7", "pl-7", "veth0", 1380) }, `
link set plv7 mtu 1380
link set pl-7/veth0 mtu 1380`},
		{"MTU 0 keeps it", func() error { return r.EnsureVeth("plv7", "pl-7", "veth0", 0) }, ""},
		{"route to another device", func() error {
			if err := r.EnsureNamespace("pl-8"); err != nil {
				return err
			}
			if err := r.EnsureVeth("plv8", "pl-8", "veth0", 0); err != nil {
				return err
			}
			if err := r.LinkUp("", "plv8"); err != nil {
				return err
			}
			return r.EnsureRoute("", remote, "plv8", netip.Addr{})
		}, `
ns add pl-8
veth add plv8 <-> pl-8/veth0
link up plv8
route replace 10.7.0.0/16 dev plv8`},
		{"sysctl change", func() error { return r.SetSysctl("pl-7", "net/ipv4/ip_forward", "0") }, "sysctl pl-7 net/ipv4/ip_forward=0"},
		{"root sysctl", func() error { return r.SetSysctl("", "net/ipv4/ip_forward", "1") }, "sysctl net/ipv4/ip_forward=1"},
		{"deletes", func() error {
			for _, err := range []error{
				r.DeleteRoute("pl-7", dflt),
				r.DeleteRoute("pl-7", dflt),
				r.DeleteAddr("pl-7", "veth0", nsAddr),
				r.DeleteAddr("pl-7", "veth0", nsAddr),
				r.DeleteAddr("pl-9", "veth0", nsAddr),
				r.DeleteLink("", "plv8"),
				r.DeleteLink("", "plv8"),
				r.DeleteLink("pl-9", "veth0"),
				r.DeleteNamespace("pl-8"),
				r.DeleteNamespace("pl-8"),
			} {
				if err != nil {
					return err
				}
			}
			return nil
		}, `
route del pl-7 0.0.0.0/0
addr del pl-7/veth0 169.254.7.2/30
link del plv8
ns del pl-8`},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got, want := r.Take(), strings.TrimSpace(s.want); got != want {
			t.Errorf("%s: transcript\n%s\nwant\n%s", s.name, got, want)
		}
	}

	wantState := `
link plv7 up mtu 1380 peer pl-7/veth0
addr plv7 169.254.7.1/30
sysctl net/ipv4/ip_forward=1
ns pl-7
link pl-7/lo up
link pl-7/veth0 up mtu 1380 peer plv7
sysctl pl-7 net/ipv4/ip_forward=0`
	if got := r.State(); got != strings.TrimSpace(wantState) {
		t.Errorf("State() =\n%s\nwant\n%s", got, strings.TrimSpace(wantState))
	}
}

func TestRecorderCascades(t *testing.T) {
	tests := []struct {
		name      string
		del       func(r *Recorder) error
		wantState string
	}{
		{"namespace takes the veth pair and its routes", func(r *Recorder) error { return r.DeleteNamespace("pl-7") }, ""},
		{"root end takes the peer", func(r *Recorder) error { return r.DeleteLink("", "plv7") }, `
ns pl-7
link pl-7/lo up
sysctl pl-7 net/ipv4/ip_forward=1`},
		{"namespace end takes the root end", func(r *Recorder) error { return r.DeleteLink("pl-7", "veth0") }, `
ns pl-7
link pl-7/lo up
sysctl pl-7 net/ipv4/ip_forward=1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder()
			if err := bringUp(r); err != nil {
				t.Fatal(err)
			}
			if err := tt.del(r); err != nil {
				t.Fatal(err)
			}
			if got := r.State(); got != strings.TrimSpace(tt.wantState) {
				t.Errorf("State() =\n%s\nwant\n%s", got, strings.TrimSpace(tt.wantState))
			}
			// Bringing it up again must redo exactly what went.
			r.Take()
			if err := bringUp(r); err != nil {
				t.Fatalf("bring up after delete: %v", err)
			}
			if r.State() == "" {
				t.Errorf("State() is empty after bring up")
			}
		})
	}
}

func TestRecorderRefuses(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(r *Recorder) error
		call    func(r *Recorder) error
		wantErr error
	}{
		{"veth into missing namespace", nil,
			func(r *Recorder) error { return r.EnsureVeth("plv7", "pl-7", "veth0", 0) },
			netsetup.ErrNoNamespace},
		{"address on missing link", func(r *Recorder) error { return r.EnsureNamespace("pl-7") },
			func(r *Recorder) error { return r.EnsureAddr("pl-7", "veth0", nsAddr) },
			syscall.ENODEV},
		{"route on a down link", func(r *Recorder) error {
			return errors.Join(r.EnsureNamespace("pl-7"), r.EnsureVeth("plv7", "pl-7", "veth0", 0))
		},
			func(r *Recorder) error { return r.EnsureRoute("", remote, "plv7", netip.Addr{}) },
			syscall.ENETDOWN},
		{"gateway off every subnet", func(r *Recorder) error {
			return errors.Join(r.EnsureNamespace("pl-7"), r.EnsureVeth("plv7", "pl-7", "veth0", 0), r.LinkUp("pl-7", "veth0"))
		},
			func(r *Recorder) error { return r.EnsureRoute("pl-7", dflt, "veth0", gw) },
			syscall.ENETUNREACH},
		{"namespace end taken", func(r *Recorder) error {
			return errors.Join(r.EnsureNamespace("pl-7"), r.EnsureVeth("plv7", "pl-7", "veth0", 0), r.EnsureNamespace("pl-8"))
		},
			func(r *Recorder) error { return r.EnsureVeth("plv8", "pl-7", "veth0", 0) },
			syscall.EEXIST},
		{"sysctl in missing namespace", nil,
			func(r *Recorder) error { return r.SetSysctl("pl-7", "net/ipv4/ip_forward", "1") },
			netsetup.ErrNoNamespace},
		{"Do in missing namespace", nil,
			func(r *Recorder) error { return r.Do("pl-7", func() error { return nil }) },
			netsetup.ErrNoNamespace},
		{"links of missing namespace", nil,
			func(r *Recorder) error { _, err := r.Links("pl-7", ""); return err },
			netsetup.ErrNoNamespace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder()
			if tt.setup != nil {
				if err := tt.setup(r); err != nil {
					t.Fatal(err)
				}
			}
			r.Take()
			before := r.State()
			err := tt.call(r)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if got := r.Take(); got != "" {
				t.Errorf("failed call recorded %q", got)
			}
			if got := r.State(); got != before {
				t.Errorf("failed call changed State to\n%s\nfrom\n%s", got, before)
			}
		})
	}
}

func TestRecorderBadArguments(t *testing.T) {
	r := NewRecorder()
	for name, err := range map[string]error{
		"namespace with slash": r.EnsureNamespace("a/b"),
		"long link":            r.LinkUp("", "abcdefghijklmnop"),
		"unmasked route":       r.EnsureRoute("", netip.MustParsePrefix("10.7.0.1/16"), "plv7", netip.Addr{}),
		"sysctl outside net/":  r.SetSysctl("", "kernel/panic", "1"),
		"veth peer in root":    r.EnsureVeth("plv7", "", "veth0", 0),
		"tiny MTU":             r.EnsureVeth("plv7", "pl-7", "veth0", 10),
	} {
		if err == nil {
			t.Errorf("%s: err = nil, want an error", name)
		}
	}
	if got := r.Take(); got != "" {
		t.Errorf("bad arguments recorded %q", got)
	}
}

func TestRecorderVethRepair(t *testing.T) {
	r := NewRecorder()
	if err := errors.Join(
		r.EnsureNamespace("pl-7"),
		r.EnsureNamespace("pl-8"),
		r.EnsureVeth("plv7", "pl-8", "veth0", 0), // the wrong namespace
	); err != nil {
		t.Fatal(err)
	}
	r.Take()
	if err := r.EnsureVeth("plv7", "pl-7", "veth0", 0); err != nil {
		t.Fatal(err)
	}
	want := "link del plv7\nveth add plv7 <-> pl-7/veth0"
	if got := r.Take(); got != want {
		t.Errorf("transcript\n%s\nwant\n%s", got, want)
	}
	if got, _ := r.Links("pl-8", ""); strings.Join(got, " ") != "lo" {
		t.Errorf("Links(pl-8) = %v, want [lo]: the old peer goes with its root end", got)
	}
}

func TestRecorderFailNext(t *testing.T) {
	r := NewRecorder()
	boom := errors.New("boom")
	r.FailNext("veth add plv7", boom)
	if err := bringUp(r); !errors.Is(err, boom) {
		t.Fatalf("bringUp = %v, want %v", err, boom)
	}
	if got := r.Take(); got != "ns add pl-7" {
		t.Errorf("transcript %q, want only the namespace", got)
	}
	// It fires once; the retry converges.
	if err := bringUp(r); err != nil {
		t.Fatalf("bringUp after the failure: %v", err)
	}
	if got, want := r.Take(), strings.TrimSpace(strings.Replace(bringUpTranscript, "ns add pl-7\n", "", 1)); got != want {
		t.Errorf("transcript\n%s\nwant\n%s", got, want)
	}
	// A no-op call matches too.
	r.FailNext("ns add pl-7", boom)
	if err := r.EnsureNamespace("pl-7"); !errors.Is(err, boom) {
		t.Errorf("EnsureNamespace = %v, want %v", err, boom)
	}
}

func TestRecorderLists(t *testing.T) {
	r := NewRecorder()
	if err := errors.Join(bringUp(r), r.EnsureNamespace("pl-10"), r.EnsureNamespace("plt-1")); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Namespaces("pl-"); strings.Join(got, " ") != "pl-10 pl-7" {
		t.Errorf("Namespaces(pl-) = %v, want [pl-10 pl-7]", got)
	}
	if got, _ := r.Links("", "plv"); strings.Join(got, " ") != "plv7" {
		t.Errorf("Links(\"\", plv) = %v, want [plv7]", got)
	}
	if got, _ := r.Links("pl-7", ""); strings.Join(got, " ") != "lo veth0" {
		t.Errorf("Links(pl-7) = %v, want [lo veth0]", got)
	}
}
