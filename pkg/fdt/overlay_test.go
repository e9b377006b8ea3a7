package fdt

import (
	"errors"
	"testing"
)

// d0 turns the sample into its "D0 stepping": a changed compatible and reg,
// and a new property, as the kernel's bcm2712-d-rpi-5-b.dts does.
func d0() *Tree {
	t := sample()
	pin := t.Lookup("/soc/gpio@7e200000")
	pin.Set("compatible", StringValue("brcm,bcm2712d0-pinctrl"))
	pin.Set("gpio-line-names", StringValue("RP1_SDA", "", "SD_PWR_ON"))
	t.Lookup("/soc/mmc@7e300000").Set("vmmc-supply", CellValue(3))
	return t
}

func TestDiffOverlay(t *testing.T) {
	base, target := sample(), d0()
	ov, err := DiffOverlay(base, target, "brcm,bcm2712")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(ov.Root.Children); got != 2 {
		t.Errorf("overlay has %d fragments, want 2 (the pin controller and the mmc node)", got)
	}
	// Through the wire format, as the firmware reads overlays/*.dtbo.
	ov, err = Parse(ov.Encode())
	if err != nil {
		t.Fatal(err)
	}
	for _, start := range []*Tree{sample(), d0()} {
		if err := ApplyOverlay(start, ov); err != nil {
			t.Fatal(err)
		}
		if !Equal(start.Root, target.Root) {
			t.Errorf("base (or target) + overlay differs from target")
		}
		// Twice changes nothing more.
		if err := ApplyOverlay(start, ov); err != nil || !Equal(start.Root, target.Root) {
			t.Errorf("applying the overlay twice changed the tree (err %v)", err)
		}
	}
	empty, err := DiffOverlay(sample(), sample(), "")
	if err != nil || len(empty.Root.Children) != 0 {
		t.Errorf("DiffOverlay of equal trees = %d fragments, %v; want none", len(empty.Root.Children), err)
	}
}

func TestDiffOverlayRefuses(t *testing.T) {
	tests := []struct {
		name  string
		tweak func(*Tree)
	}{
		{"deleted property", func(t *Tree) { t.Lookup("/soc/mmc@7e300000").Delete("broken-cd") }},
		{"new node", func(t *Tree) { t.Lookup("/soc").AddChild("new@0") }},
		{"renamed node", func(t *Tree) { t.Lookup("/soc/mmc@7e300000").Name = "mmc@7e340000" }},
		{"new phandle", func(t *Tree) { t.Lookup("/soc/gpio@7e200000").Set("phandle", CellValue(42)) }},
		{"root property", func(t *Tree) { t.Root.Set("model", StringValue("x")) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := sample()
			tc.tweak(target)
			if _, err := DiffOverlay(sample(), target, ""); !errors.Is(err, ErrNotOverlayable) {
				t.Errorf("DiffOverlay = %v, want ErrNotOverlayable", err)
			}
		})
	}
}

// FuzzDiffOverlay: for any two trees Parse accepts, an overlay DiffOverlay
// produces must turn the first into the second.
func FuzzDiffOverlay(f *testing.F) {
	f.Add(sample().Encode(), d0().Encode())
	f.Add(sample().Encode(), sample().Encode())
	f.Add(d0().Encode(), sample().Encode())
	f.Fuzz(func(t *testing.T, a, b []byte) {
		base, err := Parse(a)
		if err != nil {
			return
		}
		target, err := Parse(b)
		if err != nil {
			return
		}
		ov, err := DiffOverlay(base, target, "x")
		if err != nil {
			return
		}
		ov, err = Parse(ov.Encode())
		if err != nil {
			t.Fatalf("overlay does not parse: %v", err)
		}
		if err := ApplyOverlay(base, ov); err != nil {
			// Duplicate child names make target-path ambiguous.
			return
		}
		if !Equal(base.Root, target.Root) && uniqueNames(target.Root) {
			t.Fatalf("base + overlay != target")
		}
	})
}

func uniqueNames(n *Node) bool {
	seen := map[string]bool{}
	for _, c := range n.Children {
		if seen[c.Name] || seen[c.BaseName()] || !uniqueNames(c) {
			return false
		}
		seen[c.Name] = true
		seen[c.BaseName()] = true
	}
	return true
}
