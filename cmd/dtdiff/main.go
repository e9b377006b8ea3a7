// Command dtdiff writes the device tree overlay that turns one DTB into
// another (fdt.DiffOverlay) and proves it by applying it. The image build
// uses it for overlays/bcm2712d0.dtbo: the Pi 5 D0 changes the kernel's
// bcm2712-d-rpi-5-b.dtb makes to bcm2712-rpi-5-b.dtb (board/README.md).
//
//	dtdiff [-compatible STR] -o OUT.dtbo BASE.dtb TARGET.dtb
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/peerline/peerline/pkg/fdt"
)

func main() {
	out := flag.String("o", "", "overlay file to write")
	compatible := flag.String("compatible", "", "compatible string of the overlay's root (e.g. brcm,bcm2712)")
	flag.Parse()
	if err := run(*out, *compatible, flag.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "dtdiff: %v\n", err)
		os.Exit(1)
	}
}

func run(out, compatible string, args []string) error {
	if out == "" || len(args) != 2 {
		return fmt.Errorf("usage: dtdiff [-compatible STR] -o OUT.dtbo BASE.dtb TARGET.dtb")
	}
	read := func(p string) (*fdt.Tree, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		t, err := fdt.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return t, nil
	}
	base, err := read(args[0])
	if err != nil {
		return err
	}
	target, err := read(args[1])
	if err != nil {
		return err
	}
	ov, err := fdt.DiffOverlay(base, target, compatible)
	if err != nil {
		return fmt.Errorf("%s -> %s: %w", args[0], args[1], err)
	}
	b := ov.Encode()
	// Prove it from the bytes written: base + overlay must be target.
	check, err := fdt.Parse(b)
	if err == nil {
		err = fdt.ApplyOverlay(base, check)
	}
	if err != nil {
		return fmt.Errorf("the overlay does not apply: %w", err)
	}
	if !fdt.Equal(base.Root, target.Root) {
		return fmt.Errorf("%s + overlay is not %s", args[0], args[1])
	}
	for _, f := range ov.Root.Children {
		path, _ := f.String("target-path")
		o := f.Child("__overlay__")
		names := ""
		for _, p := range o.Props {
			names += " " + p.Name
		}
		fmt.Printf("%s:%s\n", path, names)
	}
	return os.WriteFile(out, b, 0o644)
}
