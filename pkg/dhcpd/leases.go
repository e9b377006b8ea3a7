package dhcpd

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/peerline/peerline/pkg/atomicfile"
)

// LeasesFile is the name of the bindings file in Options.StateDir.
const LeasesFile = "leases.json"

const leasesVersion = 1

type leasesJSON struct {
	Version int         `json:"version"`
	Leases  []leaseJSON `json:"leases"`
}

type leaseJSON struct {
	MAC         string    `json:"mac"`
	Line        int       `json:"line"`
	VendorClass string    `json:"vendor_class,omitempty"`
	Hostname    string    `json:"hostname,omitempty"`
	UserAgent   string    `json:"user_agent,omitempty"`
	Bound       time.Time `json:"bound"`
	LastSeen    time.Time `json:"last_seen"`
}

// load fills t from path. A missing file is an empty table. A file that
// cannot be read back completely is moved aside, never overwritten, so a
// person can repair it; the server then starts empty.
func (t *table) load(path string, now time.Time) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading phone bindings %s: %w (check the state directory's permissions)", path, err)
	}
	bindings, err := decodeLeases(data)
	if err == nil {
		for _, b := range bindings {
			if err = t.add(b); err != nil {
				break
			}
		}
	}
	if err != nil {
		// Undo a partial load: the file is all or nothing.
		for _, b := range t.bindings() {
			t.byLine[b.Line] = nil
			delete(t.byMAC, b.MAC)
		}
		bad := fmt.Sprintf("%s.bad-%d", path, now.Unix())
		if rerr := os.Rename(path, bad); rerr != nil {
			return fmt.Errorf("phone bindings %s are corrupt (%v) and cannot be moved aside: %w; move or delete the file and restart", path, err, rerr)
		}
		t.log.Error("DHCP: phone bindings file is corrupt; moved it aside and starting with no bindings. "+
			"Phones keep their lines when they renew; a phone that starts over may get a different line. "+
			"To restore the old bindings, repair the moved file, stop peerline, copy it back to the bindings path and start peerline",
			"err", err, "path", path, "moved_to", bad)
		return nil
	}
	// Lines configured by hand since the binding was made belong to the
	// hand-configured phone now.
	for _, b := range t.bindings() {
		if t.static[b.Line] {
			t.log.Warn("DHCP: dropping binding of a line now configured by hand (static)", "line", b.Line, "mac", b.MAC.String())
			t.remove(b)
		}
	}
	return nil
}

func decodeLeases(data []byte) ([]*binding, error) {
	var f leasesJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if f.Version != leasesVersion {
		return nil, fmt.Errorf("version %d, want %d", f.Version, leasesVersion)
	}
	out := make([]*binding, 0, len(f.Leases))
	for i, l := range f.Leases {
		hw, err := net.ParseMAC(l.MAC)
		if err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("lease %d: MAC %q is not an Ethernet address", i, l.MAC)
		}
		b := &binding{
			Line: l.Line, VendorClass: text(l.VendorClass), Hostname: text(l.Hostname), UserAgent: text(l.UserAgent),
			Bound: l.Bound, LastSeen: l.LastSeen,
		}
		copy(b.MAC[:], hw)
		out = append(out, b)
	}
	return out, nil
}

func encodeLeases(bs []*binding) ([]byte, error) {
	f := leasesJSON{Version: leasesVersion, Leases: make([]leaseJSON, 0, len(bs))}
	for _, b := range bs {
		f.Leases = append(f.Leases, leaseJSON{
			MAC: b.MAC.String(), Line: b.Line, VendorClass: b.VendorClass, Hostname: b.Hostname,
			UserAgent: b.UserAgent, Bound: b.Bound.UTC(), LastSeen: b.LastSeen.UTC(),
		})
	}
	return json.MarshalIndent(f, "", "  ")
}

// save writes the table to path atomically.
func (t *table) save(path string) error {
	data, err := encodeLeases(t.bindings())
	if err != nil {
		return fmt.Errorf("encoding phone bindings: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("saving phone bindings: %w", err)
	}
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("saving phone bindings (is the SD card full or read-only?): %w", err)
	}
	return nil
}
