// Package bootcheck proves, at image build time, that the initramfs can
// bring up a board's root device: every device-tree node the root device's
// controller depends on has a driver that is built into the kernel or
// packed into the initramfs.
//
// Why: a driver whose supplier (a regulator, a pin or GPIO controller, a
// clock) has no driver yet is deferred, and the kernel retries it only when
// another driver binds. In an initramfs that lacks the supplier's module
// nothing ever binds, the SD controller never probes, and the boot ends in
// "Gave up waiting for root file system device". This happened on the Pi 4
// (emmc2's vmmc/vqmmc supplies are regulator-fixed and regulator-gpio,
// both modules) and the Pi 5 (also its GPIO and pin controllers). qemu's
// -M virt boot cannot see it: it has no such nodes.
//
// The walk (Suppliers) starts at the root device's controller and follows
// every reference the kernel's device links follow (drivers/of/property.c,
// of_supplier_bindings): supplies, pin control states, GPIOs, clocks,
// resets, power domains, DMA channels, PHYs, mailboxes, interrupt parents
// (through interrupt maps) and the rest, plus gpio-ranges (a GPIO
// controller defers until its pin controller is there) and each node's
// parent buses, recursively. Check then maps each node's compatible strings
// to drivers through the kernel's modules.alias and modules.builtin.modinfo
// (package kmod), as modprobe does, and compares with the initramfs.
package bootcheck

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/peerline/peerline/pkg/fdt"
)

// Need is one node the root device depends on, and why.
type Need struct {
	// Node is the device node whose driver must bind.
	Node *fdt.Node
	// By is the node that refers to it (nil for the root device itself).
	By *fdt.Node
	// Via names the reference: a property ("vmmc-supply", "pinctrl-0"),
	// "parent bus", or "root device".
	Via string
	// Ref is the node the property pointed at, when that is not Node
	// itself (a pin state node inside a pin controller).
	Ref *fdt.Node
}

// phandle+args properties and the provider property giving their arg count.
var cellsProps = map[string]string{
	"clocks":              "#clock-cells",
	"interconnects":       "#interconnect-cells",
	"iommus":              "#iommu-cells",
	"mboxes":              "#mbox-cells",
	"io-channels":         "#io-channel-cells",
	"io-backends":         "#io-backend-cells",
	"dmas":                "#dma-cells",
	"power-domains":       "#power-domain-cells",
	"hwlocks":             "#hwlock-cells",
	"phys":                "#phy-cells",
	"pwms":                "#pwm-cells",
	"resets":              "#reset-cells",
	"interrupts-extended": "#interrupt-cells",
	"msi-parent":          "#msi-cells",
	"thermal-sensors":     "#thermal-sensor-cells",
	"access-controllers":  "#access-controller-cells",
}

// Properties that are lists of bare phandles.
var listProps = map[string]bool{
	"extcon":        true,
	"nvmem-cells":   true,
	"wakeup-parent": true,
	"leds":          true,
	"backlight":     true,
}

var pinctrlProp = regexp.MustCompile(`^pinctrl-[0-9]+$`)

// isGPIOProp matches the kernel's GPIO lookups: "gpios", "gpio",
// "<function>-gpios" and the older "<function>-gpio".
func isGPIOProp(name string) bool {
	if name == "nr-gpios" {
		return false // a count, not a reference
	}
	return name == "gpios" || name == "gpio" || strings.HasSuffix(name, "-gpios") || strings.HasSuffix(name, "-gpio")
}

// Suppliers walks from the root device's node to everything it depends on.
// The result starts with the root device itself and lists each node once,
// in the order found (breadth first). Problems in the tree (a dangling
// phandle, a missing #…-cells) are returned as errors next to the result:
// they mean the walk may have missed a dependency.
func Suppliers(t *fdt.Tree, start *fdt.Node) ([]Need, []error) {
	w := walker{t: t, seen: map[*fdt.Node]bool{}}
	w.add(Need{Node: start, Via: "root device"})
	for i := 0; i < len(w.out); i++ {
		w.visit(w.out[i].Node)
	}
	return w.out, w.errs
}

type walker struct {
	t    *fdt.Tree
	seen map[*fdt.Node]bool
	out  []Need
	errs []error
}

func (w *walker) errorf(n *fdt.Node, format string, a ...any) {
	w.errs = append(w.errs, fmt.Errorf("%s: %s", n.Path(), fmt.Sprintf(format, a...)))
}

// device is the node whose driver serves ref: ref itself if it has a
// compatible, else its nearest ancestor that has one (pin states live in
// their pin controller, nvmem cells in their nvmem device, regulators
// sometimes in their PMIC's "regulators" node).
func device(ref *fdt.Node) *fdt.Node {
	for n := ref; n != nil && n.Parent != nil; n = n.Parent {
		if len(n.Compatible()) > 0 {
			return n
		}
	}
	return nil
}

func (w *walker) add(need Need) {
	if need.Node == nil || w.seen[need.Node] {
		return
	}
	w.seen[need.Node] = true
	w.out = append(w.out, need)
}

// ref records that by needs the device serving ref, through property via.
func (w *walker) ref(by, ref *fdt.Node, via string) {
	dev := device(ref)
	if dev == nil {
		w.errorf(by, "%s points at %s, which has no compatible node above it", via, ref.Path())
		return
	}
	if dev == by {
		return // a controller's own pin hogs or GPIO lines
	}
	need := Need{Node: dev, By: by, Via: via}
	if ref != dev {
		need.Ref = ref
	}
	w.add(need)
}

func (w *walker) phandle(by *fdt.Node, via string, ph uint32) *fdt.Node {
	n := w.t.ByPhandle(ph)
	if n == nil {
		w.errorf(by, "%s: no node has phandle %#x", via, ph)
	}
	return n
}

func (w *walker) visit(n *fdt.Node) {
	if !n.Enabled() {
		// The kernel never probes it, and its device links skip it
		// (of_link_to_phandle); what it would need does not matter.
		return
	}
	// Parent buses: a node is only populated once its parent's driver (a
	// simple-bus, a PCIe host, an MFD) has run.
	for p := n.Parent; p != nil && p.Parent != nil; p = p.Parent {
		if len(p.Compatible()) > 0 {
			w.add(Need{Node: p, By: n, Via: "parent bus"})
			break
		}
	}
	props := append([]fdt.Prop(nil), n.Props...)
	sort.SliceStable(props, func(i, j int) bool { return props[i].Name < props[j].Name })
	for _, p := range props {
		name := p.Name
		switch {
		case cellsProps[name] != "":
			w.cellsList(n, p, cellsProps[name], name == "msi-parent")
		case name == "gpio-ranges":
			w.fixedArgs(n, p, 3)
		case listProps[name] || pinctrlProp.MatchString(name):
			w.fixedArgs(n, p, 0)
		case strings.HasSuffix(name, "-supply"):
			w.fixedArgs(n, p, 0)
		case isGPIOProp(name):
			w.cellsList(n, p, "#gpio-cells", false)
		case name == "interrupts":
			w.interruptParent(n)
		}
	}
}

// fixedArgs follows a list of phandles each followed by args cells.
func (w *walker) fixedArgs(n *fdt.Node, p fdt.Prop, args int) {
	cells, ok := p.Cells()
	if !ok {
		w.errorf(n, "%s is not a list of cells", p.Name)
		return
	}
	for i := 0; i < len(cells); i += 1 + args {
		if cells[i] == 0 {
			continue // an empty entry, allowed in lists
		}
		if ref := w.phandle(n, p.Name, cells[i]); ref != nil {
			w.ref(n, ref, p.Name)
		}
	}
}

// cellsList follows a phandle+args list whose arg count each provider
// gives in its cellsName property. optional: a missing cellsName means 0.
func (w *walker) cellsList(n *fdt.Node, p fdt.Prop, cellsName string, optional bool) {
	cells, ok := p.Cells()
	if !ok {
		w.errorf(n, "%s is not a list of cells", p.Name)
		return
	}
	for i := 0; i < len(cells); {
		ph := cells[i]
		i++
		if ph == 0 {
			continue
		}
		ref := w.phandle(n, p.Name, ph)
		if ref == nil {
			return // the rest cannot be decoded
		}
		args, ok := ref.U32(cellsName)
		if !ok {
			if !optional {
				w.errorf(n, "%s points at %s, which has no %s", p.Name, ref.Path(), cellsName)
				w.ref(n, ref, p.Name)
				return
			}
			args = 0
		}
		if uint64(i)+uint64(args) > uint64(len(cells)) {
			w.errorf(n, "%s ends inside the arguments for %s", p.Name, ref.Path())
			return
		}
		i += int(args)
		w.ref(n, ref, p.Name)
	}
}

// interruptParent follows a node's interrupts to their controller, as the
// kernel's of_irq_find_parent: the nearest interrupt-parent, then up until
// a node with #interrupt-cells; through an interrupt-map to every parent.
func (w *walker) interruptParent(n *fdt.Node) {
	p := findInterruptParent(w.t, n)
	if p == nil {
		w.errorf(n, "interrupts without an interrupt parent")
		return
	}
	if p == n {
		return
	}
	w.ref(n, p, "interrupts")
	if p.Has("interrupt-map") {
		w.interruptMap(p)
	}
}

func findInterruptParent(t *fdt.Tree, n *fdt.Node) *fdt.Node {
	child := n
	for range 256 {
		var p *fdt.Node
		if ph, ok := child.U32("interrupt-parent"); ok {
			p = t.ByPhandle(ph)
		} else {
			p = child.Parent
		}
		if p == nil {
			return nil
		}
		if p.Has("#interrupt-cells") {
			return p
		}
		child = p
	}
	return nil
}

// interruptMap adds the parents named in a nexus node's interrupt-map:
// entries of child unit address, child specifier, parent phandle, parent
// unit address, parent specifier.
func (w *walker) interruptMap(nexus *fdt.Node) {
	cells, ok := nexus.Cells("interrupt-map")
	if !ok {
		w.errorf(nexus, "interrupt-map is not a list of cells")
		return
	}
	addr, ok := nexus.U32("#address-cells")
	if !ok {
		addr = 2 // the kernel's default for the nexus itself
	}
	intr, _ := nexus.U32("#interrupt-cells")
	for i := 0; i < len(cells); {
		i += int(addr) + int(intr)
		if i >= len(cells) {
			w.errorf(nexus, "interrupt-map ends inside an entry")
			return
		}
		parent := w.phandle(nexus, "interrupt-map", cells[i])
		i++
		if parent == nil {
			return
		}
		pa, _ := parent.U32("#address-cells")
		pi, ok := parent.U32("#interrupt-cells")
		if !ok {
			w.errorf(nexus, "interrupt-map points at %s, which has no #interrupt-cells", parent.Path())
			return
		}
		i += int(pa) + int(pi)
		if i > len(cells) {
			w.errorf(nexus, "interrupt-map ends inside an entry")
			return
		}
		if parent != nexus {
			w.ref(nexus, parent, "interrupt-map")
		}
	}
}
