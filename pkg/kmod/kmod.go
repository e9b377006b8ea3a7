// Package kmod answers, from a kernel's module index files, which module
// drives a device-tree node and whether that module is built into the kernel.
//
// It reads what depmod writes under /usr/lib/modules/<version>/ (and what
// the kernel package ships there): modules.alias, modules.builtin,
// modules.builtin.modinfo and modules.dep. Matching follows modprobe: a
// device-tree node's modalias is "of:N<name>T<type>C<compatible>C<...>" and
// an alias is a shell glob over it. Module names are normalised as the
// kernel does ('-' and '_' are the same), and a module's file name
// (kernel/drivers/regulator/gpio-regulator.ko.xz) gives its name
// (gpio_regulator).
package kmod

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// Index holds a kernel's module aliases and its built-in modules.
type Index struct {
	// aliases maps device-tree alias patterns ("of:N*T*Cregulator-fixed")
	// to the loadable modules that declare them.
	aliases []alias
	// builtinAliases are the aliases of modules compiled into the kernel.
	builtinAliases []alias
	builtin        map[string]bool
	deps           map[string][]string
}

type alias struct {
	pattern string
	module  string
}

// NewIndex returns an empty index; fill it with the Read methods.
func NewIndex() *Index {
	return &Index{builtin: map[string]bool{}, deps: map[string][]string{}}
}

// ModuleName turns a module file name or path into the module's name:
// "kernel/drivers/mmc/host/sdhci-iproc.ko.xz" -> "sdhci_iproc".
func ModuleName(file string) string {
	base := path.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ReadAlias reads modules.alias ("alias <pattern> <module>" lines). Only
// device-tree aliases ("of:") are kept.
func (x *Index) ReadAlias(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 3 || f[0] != "alias" {
			return fmt.Errorf("modules.alias line %d: %q is not \"alias PATTERN MODULE\"", line, sc.Text())
		}
		// Some non-device aliases contain spaces ("alias x soc card x");
		// the module is the last field either way.
		if strings.HasPrefix(f[1], "of:") {
			x.aliases = append(x.aliases, alias{f[1], ModuleName(f[len(f)-1])})
		}
	}
	return sc.Err()
}

// ReadBuiltin reads modules.builtin (one module path per line).
func (x *Index) ReadBuiltin(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			x.builtin[ModuleName(s)] = true
		}
	}
	return sc.Err()
}

// ReadBuiltinModinfo reads modules.builtin.modinfo: NUL-terminated
// "module.key=value" records; the "alias" ones are the device tables of the
// built-in drivers.
func (x *Index) ReadBuiltinModinfo(b []byte) {
	for _, rec := range bytes.Split(b, []byte{0}) {
		modkey, value, ok := strings.Cut(string(rec), "=")
		if !ok {
			continue
		}
		mod, key, ok := strings.Cut(modkey, ".")
		if !ok {
			continue
		}
		name := ModuleName(mod)
		x.builtin[name] = true
		if key == "alias" && strings.HasPrefix(value, "of:") {
			x.builtinAliases = append(x.builtinAliases, alias{value, name})
		}
	}
}

// ReadDep reads modules.dep ("path.ko: dep.ko dep2.ko" lines).
func (x *Index) ReadDep(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		mod, deps, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var names []string
		for _, d := range strings.Fields(deps) {
			names = append(names, ModuleName(d))
		}
		x.deps[ModuleName(mod)] = names
	}
	return sc.Err()
}

// Builtin reports whether the module is compiled into the kernel.
func (x *Index) Builtin(module string) bool {
	return x.builtin[ModuleName(module)]
}

// Deps returns the modules a module needs loaded first, transitively, in
// no particular order.
func (x *Index) Deps(module string) []string {
	seen := map[string]bool{}
	var out []string
	var walk func(m string)
	walk = func(m string) {
		for _, d := range x.deps[m] {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
				walk(d)
			}
		}
	}
	walk(ModuleName(module))
	sort.Strings(out)
	return out
}

// Match is the drivers a device-tree node's modalias matches.
type Match struct {
	// Builtin lists built-in modules whose aliases match.
	Builtin []string
	// Modules lists loadable modules whose aliases match.
	Modules []string
}

// Modalias is the kernel's device-tree modalias for a node (of_modalias):
// "of:N<base name>T<device_type>C<compatible>..." with an empty type when
// the node has none.
func Modalias(baseName, deviceType string, compatible []string) string {
	var sb strings.Builder
	sb.WriteString("of:N")
	sb.WriteString(baseName)
	sb.WriteString("T")
	sb.WriteString(deviceType)
	for _, c := range compatible {
		sb.WriteString("C")
		sb.WriteString(strings.ReplaceAll(c, " ", "_"))
	}
	return sb.String()
}

// Lookup returns the drivers whose aliases match the modalias, each listed
// once, sorted.
func (x *Index) Lookup(modalias string) Match {
	var m Match
	m.Builtin = matchAll(x.builtinAliases, modalias)
	m.Modules = matchAll(x.aliases, modalias)
	return m
}

func matchAll(as []alias, modalias string) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range as {
		if seen[a.module] {
			continue
		}
		// Aliases are fnmatch globs; path.Match is the same for
		// modaliases, which never contain '/'. A malformed pattern
		// matches nothing, as in modprobe.
		if ok, err := path.Match(a.pattern, modalias); err == nil && ok {
			seen[a.module] = true
			out = append(out, a.module)
		}
	}
	sort.Strings(out)
	return out
}
