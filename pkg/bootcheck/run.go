package bootcheck

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/peerline/peerline/pkg/fdt"
	"github.com/peerline/peerline/pkg/kmod"
)

// RootRule names, for the device trees whose file names match Glob, the
// __symbols__ label of the controller that holds the root filesystem.
type RootRule struct {
	Glob  string
	Label string
}

// ParseRootRules reads "GLOB LABEL" lines (# comments, blank lines).
func ParseRootRules(r io.Reader) ([]RootRule, error) {
	var rules []RootRule
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		s, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(s)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: %q is not \"DTB-GLOB LABEL\"", line, sc.Text())
		}
		if _, err := path.Match(f[0], ""); err != nil {
			return nil, fmt.Errorf("line %d: bad glob %q: %w", line, f[0], err)
		}
		rules = append(rules, RootRule{Glob: f[0], Label: f[1]})
	}
	return rules, sc.Err()
}

// RootDevice finds a device tree's root device by the first rule whose glob
// matches its file name. Every device tree must match one: a new board's
// DTB on the card cannot slip past the check.
func RootDevice(rules []RootRule, name string, t *fdt.Tree) (*fdt.Node, error) {
	for _, r := range rules {
		if ok, _ := path.Match(r.Glob, name); !ok {
			continue
		}
		n := t.Symbol(r.Label)
		if n == nil {
			return nil, fmt.Errorf("%s: no label %q in /__symbols__ (was the DTB built without dtc -@, or is the rule wrong?)", name, r.Label)
		}
		if !n.Enabled() {
			return nil, fmt.Errorf("%s: the root device %s (%s) is disabled", name, n.Path(), r.Label)
		}
		return n, nil
	}
	return nil, fmt.Errorf("%s: no rule names its root device; add a line to the root device list", name)
}

// Options are the inputs of a check run.
type Options struct {
	// ModulesDir is /usr/lib/modules/<version> of the image's kernel.
	ModulesDir string
	// InitramfsList is a file listing the initramfs' paths, one a line
	// (cpio -t output); its *.ko* files are the modules it holds.
	InitramfsList string
	// RootRules is the file of RootRule lines.
	RootRules string
	// DTBs are the device trees to check, as the firmware would load them.
	DTBs []string
	// Verbose lists every needed node, not only the problems.
	Verbose bool
}

// ErrMissing is returned when some root device cannot be brought up.
var ErrMissing = errors.New("the initramfs cannot mount the root filesystem on every board")

// Run checks every DTB and writes a report per DTB to w. It returns
// ErrMissing (wrapped, with one line per problem) when a check fails.
func Run(o Options, w io.Writer) error {
	idx, err := LoadIndex(o.ModulesDir)
	if err != nil {
		return err
	}
	initramfs, err := LoadInitramfsList(o.InitramfsList)
	if err != nil {
		return err
	}
	f, err := os.Open(o.RootRules)
	if err != nil {
		return fmt.Errorf("root device list: %w", err)
	}
	rules, err := ParseRootRules(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", o.RootRules, err)
	}
	if len(o.DTBs) == 0 {
		return errors.New("no device trees given")
	}
	var problems []string
	for _, p := range o.DTBs {
		name := filepath.Base(p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		t, err := fdt.Parse(b)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		root, err := RootDevice(rules, name, t)
		if err != nil {
			problems = append(problems, err.Error())
			fmt.Fprintf(w, "FAIL: %v\n", err)
			continue
		}
		r := Check(name, t, root, idx, initramfs)
		r.Write(w, o.Verbose)
		problems = append(problems, r.Problems()...)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w:\n  %s\nadd the modules to rootfs/etc/initramfs-tools/modules (the image build then rebuilds the root filesystem)",
			ErrMissing, strings.Join(problems, "\n  "))
	}
	return nil
}

// LoadIndex reads a kernel's module index files from its modules directory.
func LoadIndex(dir string) (*kmod.Index, error) {
	idx := kmod.NewIndex()
	read := func(name string, f func(io.Reader) error) error {
		fh, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("kernel module index: %w (is %s the modules directory of the image's kernel, after depmod?)", err, dir)
		}
		defer fh.Close()
		if err := f(fh); err != nil {
			return fmt.Errorf("%s: %w", fh.Name(), err)
		}
		return nil
	}
	if err := read("modules.alias", idx.ReadAlias); err != nil {
		return nil, err
	}
	if err := read("modules.dep", idx.ReadDep); err != nil {
		return nil, err
	}
	if err := read("modules.builtin", idx.ReadBuiltin); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "modules.builtin.modinfo"))
	if err != nil {
		return nil, fmt.Errorf("kernel module index: %w", err)
	}
	idx.ReadBuiltinModinfo(b)
	return idx, nil
}

// LoadInitramfsList reads a listing of the initramfs and returns the names
// of the modules in it.
func LoadInitramfsList(file string) (map[string]bool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("initramfs listing: %w", err)
	}
	mods := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		base := path.Base(strings.TrimSpace(line))
		if strings.HasSuffix(base, ".ko") || strings.Contains(base, ".ko.") {
			mods[kmod.ModuleName(base)] = true
		}
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("initramfs listing %s names no kernel modules; is it a listing of the initrd (cpio -t)?", file)
	}
	return mods, nil
}
