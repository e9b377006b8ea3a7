package bootcheck

import (
	"fmt"
	"io"
	"strings"

	"github.com/peerline/peerline/pkg/fdt"
	"github.com/peerline/peerline/pkg/kmod"
)

// Verdict says how a needed node's driver reaches the kernel.
type Verdict int

const (
	// Builtin: a driver compiled into the kernel matches.
	Builtin Verdict = iota
	// InInitramfs: a loadable driver matches and is in the initramfs, with
	// every module it depends on.
	InInitramfs
	// Missing: only loadable drivers match, and none of them is in the
	// initramfs (or one is, without a module it depends on). The boot
	// stops here.
	Missing
	// NoModule: no module alias matches. The node is served by the OF core
	// itself (simple-bus, fixed clocks, interrupt controllers declared
	// with IRQCHIP_DECLARE) or by nothing; no initramfs can change that.
	NoModule
	// Disabled: the node's status is not "okay", so no driver binds it.
	// The kernel's device links ignore disabled suppliers, so this is only
	// fatal for a regulator supply: regulator_get waits for a regulator
	// that will never register (Finding.Fatal).
	Disabled
)

func (v Verdict) String() string {
	return [...]string{"built-in", "initramfs", "MISSING", "no module", "DISABLED"}[v]
}

// Finding is the verdict on one needed node.
type Finding struct {
	Need
	Verdict Verdict
	// Drivers are the matching modules (built-in or loadable).
	Drivers []string
	// MissingDeps lists modules a driver in the initramfs needs that are
	// not there.
	MissingDeps []string
}

// Report is the outcome for one device tree.
type Report struct {
	Name     string // the DTB's file name
	Root     *fdt.Node
	Findings []Finding
	// TreeErrors are problems the walk met in the tree.
	TreeErrors []error
}

// Fatal reports whether the finding stops the root device from probing.
func (f Finding) Fatal() bool {
	return f.Verdict == Missing || (f.Verdict == Disabled && strings.HasSuffix(f.Via, "-supply"))
}

// Failed reports whether the initramfs cannot bring up the root device.
func (r *Report) Failed() bool {
	for _, f := range r.Findings {
		if f.Fatal() {
			return true
		}
	}
	return len(r.TreeErrors) > 0
}

// Check walks the tree from root and judges every needed node against the
// kernel's module index and the set of module names in the initramfs.
func Check(name string, t *fdt.Tree, root *fdt.Node, idx *kmod.Index, initramfs map[string]bool) *Report {
	needs, errs := Suppliers(t, root)
	r := &Report{Name: name, Root: root, TreeErrors: errs}
	for _, need := range needs {
		f := Finding{Need: need}
		n := need.Node
		typ, _ := n.String("device_type")
		m := idx.Lookup(kmod.Modalias(n.BaseName(), typ, n.Compatible()))
		switch {
		case !n.Enabled():
			f.Verdict = Disabled
			f.Drivers = append(m.Builtin, m.Modules...)
		case len(m.Builtin) > 0:
			f.Verdict = Builtin
			f.Drivers = m.Builtin
		case len(m.Modules) == 0:
			f.Verdict = NoModule
		default:
			f.Verdict = Missing
			f.Drivers = m.Modules
			for _, mod := range m.Modules {
				if !initramfs[mod] {
					continue
				}
				var lacking []string
				for _, d := range idx.Deps(mod) {
					if !initramfs[d] && !idx.Builtin(d) {
						lacking = append(lacking, d)
					}
				}
				if len(lacking) == 0 {
					f.Verdict = InInitramfs
					f.Drivers = []string{mod}
					f.MissingDeps = nil
					break
				}
				f.MissingDeps = lacking
			}
		}
		r.Findings = append(r.Findings, f)
	}
	return r
}

// why describes the reference chain of a finding: "vmmc-supply of /emmc2-bus@fe000000/mmc@7e340000".
func (f Finding) why() string {
	if f.By == nil {
		return f.Via
	}
	s := f.Via + " of " + f.By.Path()
	if f.Ref != nil {
		s += " (-> " + f.Ref.Path() + ")"
	}
	return s
}

// Write prints the report: every needed node with its verdict when
// verbose, else the root device and the problems only.
func (r *Report) Write(w io.Writer, verbose bool) {
	status := "ok"
	if r.Failed() {
		status = "FAIL"
	}
	fmt.Fprintf(w, "%s: %s: root device %s (%s), %d nodes needed\n", status, r.Name, r.Root.Path(),
		strings.Join(r.Root.Compatible(), ", "), len(r.Findings))
	for _, f := range r.Findings {
		if !verbose && !f.Fatal() {
			continue
		}
		drivers := strings.Join(f.Drivers, " ")
		if drivers == "" {
			drivers = "-"
		}
		fmt.Fprintf(w, "  %-10s %-26s %s [%s], %s\n", f.Verdict, drivers, f.Node.Path(),
			strings.Join(f.Node.Compatible(), ", "), f.why())
		if len(f.MissingDeps) > 0 {
			fmt.Fprintf(w, "             %s is in the initramfs but needs %s, which is not\n", strings.Join(f.Drivers, " "), strings.Join(f.MissingDeps, " "))
		}
	}
	for _, e := range r.TreeErrors {
		fmt.Fprintf(w, "  TREE       %v\n", e)
	}
}

// Problems lists one line per failure, naming the module to add and the
// node that needs it, for the build's error message.
func (r *Report) Problems() []string {
	var out []string
	for _, f := range r.Findings {
		switch f.Verdict {
		case Missing:
			mods := f.Drivers
			if len(f.MissingDeps) > 0 {
				mods = f.MissingDeps
			}
			out = append(out, fmt.Sprintf("%s: module %s (for %s [%s], %s) is neither built in nor in the initramfs",
				r.Name, strings.Join(mods, " or "), f.Node.Path(), strings.Join(f.Node.Compatible(), ", "), f.why()))
		case Disabled:
			if !f.Fatal() {
				continue
			}
			out = append(out, fmt.Sprintf("%s: %s is needed (%s) but disabled in the device tree: the regulator never registers and the root device waits for it forever",
				r.Name, f.Node.Path(), f.why()))
		}
	}
	for _, e := range r.TreeErrors {
		out = append(out, fmt.Sprintf("%s: device tree: %v", r.Name, e))
	}
	return out
}
