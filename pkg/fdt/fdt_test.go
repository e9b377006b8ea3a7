package fdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

// sample builds a small tree shaped like a Pi's: a bus, an SD controller
// with a supply and pins, a regulator, a pin controller with a state node.
func sample() *Tree {
	t := New()
	t.Reserve = [][2]uint64{{0, 0x1000}}
	r := t.Root
	r.Set("compatible", StringValue("raspberrypi,4-model-b", "brcm,bcm2711"))
	r.Set("#address-cells", CellValue(2))
	soc := r.AddChild("soc")
	soc.Set("compatible", StringValue("simple-bus"))
	pin := soc.AddChild("gpio@7e200000")
	pin.Set("compatible", StringValue("brcm,bcm2711-gpio"))
	pin.Set("phandle", CellValue(3))
	st := pin.AddChild("emmc-gpio34")
	st.Set("phandle", CellValue(4))
	mmc := soc.AddChild("mmc@7e300000")
	mmc.Set("compatible", StringValue("brcm,bcm2711-emmc2"))
	mmc.Set("vmmc-supply", CellValue(5))
	mmc.Set("pinctrl-0", CellValue(4))
	mmc.Set("status", StringValue("okay"))
	mmc.Set("broken-cd", nil)
	reg := r.AddChild("regulator-sd-vcc")
	reg.Set("compatible", StringValue("regulator-fixed"))
	reg.Set("phandle", CellValue(5))
	reg.Set("status", StringValue("disabled"))
	sym := r.AddChild("__symbols__")
	sym.Set("emmc2", StringValue("/soc/mmc@7e300000"))
	t.Reindex()
	return t
}

func TestRoundTrip(t *testing.T) {
	want := sample()
	b := want.Encode()
	got, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(Encode(sample)): %v", err)
	}
	if !Equal(got.Root, want.Root) {
		t.Errorf("Parse(Encode(sample)) differs from sample")
	}
	if !reflect.DeepEqual(got.Reserve, want.Reserve) {
		t.Errorf("Reserve = %v, want %v", got.Reserve, want.Reserve)
	}
	if b2 := got.Encode(); !bytes.Equal(b, b2) {
		t.Errorf("Encode is not a fixed point: %d vs %d bytes", len(b), len(b2))
	}
}

func TestAccessors(t *testing.T) {
	tr, err := Parse(sample().Encode())
	if err != nil {
		t.Fatal(err)
	}
	mmc := tr.Lookup("/soc/mmc@7e300000")
	if mmc == nil {
		t.Fatal(`Lookup("/soc/mmc@7e300000") = nil`)
	}
	if got := tr.Lookup("/soc/mmc"); got != mmc {
		t.Errorf(`Lookup("/soc/mmc") = %v, want the mmc node (unique base name)`, got)
	}
	if got := tr.Symbol("emmc2"); got != mmc {
		t.Errorf(`Symbol("emmc2") = %v, want the mmc node`, got)
	}
	if got := mmc.Path(); got != "/soc/mmc@7e300000" {
		t.Errorf("Path = %q", got)
	}
	if got := tr.Root.Path(); got != "/" {
		t.Errorf("root Path = %q", got)
	}
	if got := mmc.Compatible(); !reflect.DeepEqual(got, []string{"brcm,bcm2711-emmc2"}) {
		t.Errorf("Compatible = %q", got)
	}
	if got := tr.Root.Compatible(); !reflect.DeepEqual(got, []string{"raspberrypi,4-model-b", "brcm,bcm2711"}) {
		t.Errorf("root Compatible = %q", got)
	}
	if v, ok := mmc.U32("vmmc-supply"); !ok || v != 5 {
		t.Errorf("U32(vmmc-supply) = %d, %v", v, ok)
	}
	if reg := tr.ByPhandle(5); reg == nil || reg.Name != "regulator-sd-vcc" || reg.Enabled() {
		t.Errorf("ByPhandle(5) = %v, want the disabled regulator", reg)
	}
	if !mmc.Enabled() || !mmc.Has("broken-cd") || mmc.Has("no-such") {
		t.Errorf("Enabled/Has wrong on mmc")
	}
	if st := tr.ByPhandle(4); st == nil || st.BaseName() != "emmc-gpio34" || st.Parent.Name != "gpio@7e200000" {
		t.Errorf("ByPhandle(4) = %v", st)
	}
	if tr.Lookup("soc") != nil || tr.Lookup("/nope") != nil || tr.ByPhandle(99) != nil {
		t.Errorf("lookups of missing things must give nil")
	}
}

func TestParseErrors(t *testing.T) {
	good := sample().Encode()
	be := binary.BigEndian
	mut := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	offStruct := be.Uint32(good[8:])
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", good[:20]},
		{"bad magic", mut(func(b []byte) []byte { b[0] = 0; return b })},
		{"totalsize past end", mut(func(b []byte) []byte { be.PutUint32(b[4:], uint32(len(b)+1)); return b })},
		{"version 15", mut(func(b []byte) []byte { be.PutUint32(b[20:], 15); return b })},
		{"struct past end", mut(func(b []byte) []byte { be.PutUint32(b[36:], uint32(len(b))); return b })},
		{"strings offset inside header", mut(func(b []byte) []byte { be.PutUint32(b[12:], 4); return b })},
		{"truncated", good[:len(good)-30]},
		{"first token not a node", mut(func(b []byte) []byte { be.PutUint32(b[offStruct:], tokenProp); return b })},
		{"unknown token", mut(func(b []byte) []byte { be.PutUint32(b[offStruct:], 7); return b })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(tc.b); !errors.Is(err, ErrFormat) {
				t.Errorf("Parse = %v, want an ErrFormat error", err)
			}
		})
	}
}

func TestDeepNesting(t *testing.T) {
	tr := New()
	n := tr.Root
	for range maxDepth + 2 {
		n = n.AddChild("n")
	}
	if _, err := Parse(tr.Encode()); !errors.Is(err, ErrFormat) {
		t.Errorf("Parse of a tree %d deep = %v, want an ErrFormat error", maxDepth+2, err)
	}
}

// TestAgainstDtc checks the reader and writer against the reference
// compiler, when it is installed (device-tree-compiler): dtc must read what
// Encode writes, and Parse what dtc writes, with the same content.
func TestAgainstDtc(t *testing.T) {
	dtc, err := exec.LookPath("dtc")
	if err != nil {
		// make test installs it; only a bare go test may go without.
		if os.Getenv("CI") != "" {
			t.Fatal("dtc not installed (apt install device-tree-compiler; make test installs it)")
		}
		t.Skip("dtc not installed (apt install device-tree-compiler)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "in.dtb")
	if err := writeFile(src, sample().Encode()); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(dtc, "-q", "-I", "dtb", "-O", "dtb", src).Output()
	if err != nil {
		t.Fatalf("dtc rejected Encode's output: %v", err)
	}
	got, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(dtc output): %v", err)
	}
	if !Equal(got.Root, sample().Root) {
		t.Errorf("dtc's re-encoding parses to a different tree")
	}
}
