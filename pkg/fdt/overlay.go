package fdt

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotOverlayable is wrapped by DiffOverlay when the difference between
// two trees cannot be written as property assignments.
var ErrNotOverlayable = errors.New("the trees differ in a way an overlay cannot express")

// DiffOverlay returns a device tree overlay that turns base into target:
// one fragment per node whose properties differ, addressed by target-path
// and assigning target's values. Overlays can set and add properties but
// not delete them, and this one adds no nodes, so a target that lacks a
// property or node of base, has a node base lacks, or renumbers a phandle
// is refused (ErrNotOverlayable). Applying it twice, or to target itself,
// changes nothing more: every fragment is a plain assignment.
//
// The image uses it to derive the Pi 5 D0 overlay (overlays/bcm2712d0.dtbo,
// which the Pi firmware applies on D0 boards) from the kernel's own C0 and
// D0 device trees, so the two can never drift apart.
func DiffOverlay(base, target *Tree, compatible string) (*Tree, error) {
	ov := New()
	if compatible != "" {
		ov.Root.Set("compatible", StringValue(compatible))
	}
	n := 0
	var walk func(b, t *Node) error
	walk = func(b, t *Node) error {
		path := t.Path()
		if path == "/__symbols__" {
			// Labels of the same nodes; the firmware merges overlay
			// symbols, and we add none.
			return nil
		}
		var set []Prop
		for _, tp := range t.Props {
			bp, ok := b.Prop(tp.Name)
			if ok && string(bp.Value) == string(tp.Value) {
				continue
			}
			if tp.Name == "phandle" || tp.Name == "linux,phandle" {
				return fmt.Errorf("%w: %s changes its phandle", ErrNotOverlayable, path)
			}
			set = append(set, tp)
		}
		for _, bp := range b.Props {
			if !t.Has(bp.Name) {
				return fmt.Errorf("%w: %s loses property %s", ErrNotOverlayable, path, bp.Name)
			}
		}
		if len(set) > 0 {
			if path == "/" {
				return fmt.Errorf("%w: the root node's properties differ", ErrNotOverlayable)
			}
			frag := ov.Root.AddChild(fmt.Sprintf("fragment@%d", n))
			n++
			frag.Set("target-path", StringValue(path))
			o := frag.AddChild("__overlay__")
			for _, p := range set {
				o.Set(p.Name, p.Value)
			}
		}
		if len(b.Children) != len(t.Children) {
			return fmt.Errorf("%w: %s has %d subnodes, the base %d", ErrNotOverlayable, path, len(t.Children), len(b.Children))
		}
		for i, tc := range t.Children {
			bc := b.Children[i]
			if bc.Name != tc.Name {
				return fmt.Errorf("%w: %s: subnode %q where the base has %q", ErrNotOverlayable, path, tc.Name, bc.Name)
			}
			if err := walk(bc, tc); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(base.Root, target.Root); err != nil {
		return nil, err
	}
	return ov, nil
}

// ApplyOverlay applies an overlay made of target-path fragments (as
// DiffOverlay writes them) to t, the way the Pi firmware and fdtoverlay do:
// each __overlay__ property is set on the target node.
func ApplyOverlay(t, ov *Tree) error {
	for _, frag := range ov.Root.Children {
		if !strings.HasPrefix(frag.Name, "fragment") {
			continue
		}
		path, ok := frag.String("target-path")
		if !ok {
			return fmt.Errorf("%s: only target-path fragments are supported", frag.Name)
		}
		target := t.Lookup(path)
		if target == nil {
			return fmt.Errorf("%s: target-path %s is not in the tree", frag.Name, path)
		}
		o := frag.Child("__overlay__")
		if o == nil {
			return fmt.Errorf("%s has no __overlay__", frag.Name)
		}
		if len(o.Children) > 0 {
			return fmt.Errorf("%s adds nodes; only property assignments are supported", frag.Name)
		}
		for _, p := range o.Props {
			target.Set(p.Name, p.Value)
		}
	}
	t.Reindex()
	return nil
}
