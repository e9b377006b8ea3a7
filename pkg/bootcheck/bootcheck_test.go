package bootcheck

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/peerline/peerline/pkg/fdt"
	"github.com/peerline/peerline/pkg/kmod"
)

// board builds a tree shaped like the Pi 5's card slot: the SDHCI under a
// simple-bus, with a fixed and a GPIO regulator, a card-detect GPIO on a
// GPIO controller whose gpio-ranges point at a pin controller, a pin state
// in a second pin controller, a clock, and interrupts through a nexus.
func board() *fdt.Tree {
	t := fdt.New()
	r := t.Root
	r.Set("compatible", fdt.StringValue("raspberrypi,5-model-b", "brcm,bcm2712"))
	r.Set("interrupt-parent", fdt.CellValue(1))
	gic := r.AddChild("interrupt-controller@7fff9000")
	gic.Set("compatible", fdt.StringValue("arm,gic-400"))
	gic.Set("#interrupt-cells", fdt.CellValue(3))
	gic.Set("interrupt-controller", nil)
	gic.Set("phandle", fdt.CellValue(1))
	clk := r.AddChild("clk-emmc2")
	clk.Set("compatible", fdt.StringValue("fixed-clock"))
	clk.Set("#clock-cells", fdt.CellValue(0))
	clk.Set("phandle", fdt.CellValue(2))
	soc := r.AddChild("soc@107c000000")
	soc.Set("compatible", fdt.StringValue("simple-bus"))
	pinctrl := soc.AddChild("pinctrl@7d504100")
	pinctrl.Set("compatible", fdt.StringValue("brcm,bcm2712c0-pinctrl"))
	pinctrl.Set("phandle", fdt.CellValue(3))
	state := pinctrl.AddChild("emmc-sd-default-state")
	state.Set("phandle", fdt.CellValue(4))
	aon := soc.AddChild("pinctrl@7d510700")
	aon.Set("compatible", fdt.StringValue("brcm,bcm2712c0-aon-pinctrl"))
	aon.Set("phandle", fdt.CellValue(5))
	gpio := soc.AddChild("gpio@7d517c00")
	gpio.Set("compatible", fdt.StringValue("brcm,bcm7445-gpio", "brcm,brcmstb-gpio"))
	gpio.Set("#gpio-cells", fdt.CellValue(2))
	gpio.Set("gpio-ranges", fdt.CellValue(5, 0, 0, 17))
	gpio.Set("phandle", fdt.CellValue(6))
	nexus := soc.AddChild("intc-nexus")
	nexus.Set("compatible", fdt.StringValue("test,nexus"))
	nexus.Set("#interrupt-cells", fdt.CellValue(1))
	nexus.Set("#address-cells", fdt.CellValue(0))
	nexus.Set("interrupt-map", fdt.CellValue(0, 1, 0, 0x7e, 4))
	nexus.Set("phandle", fdt.CellValue(7))
	mmc := soc.AddChild("mmc@fff000")
	mmc.Set("compatible", fdt.StringValue("brcm,bcm2712-sdhci", "brcm,sdhci-brcmstb"))
	mmc.Set("clocks", fdt.CellValue(2))
	mmc.Set("interrupt-parent", fdt.CellValue(7))
	mmc.Set("interrupts", fdt.CellValue(0))
	mmc.Set("pinctrl-0", fdt.CellValue(4))
	mmc.Set("cd-gpios", fdt.CellValue(6, 5, 1))
	mmc.Set("vmmc-supply", fdt.CellValue(8))
	mmc.Set("vqmmc-supply", fdt.CellValue(9))
	vcc := r.AddChild("sd-vcc-reg")
	vcc.Set("compatible", fdt.StringValue("regulator-fixed"))
	vcc.Set("gpio", fdt.CellValue(6, 4, 0))
	vcc.Set("phandle", fdt.CellValue(8))
	io := r.AddChild("sd-io-1v8-reg")
	io.Set("compatible", fdt.StringValue("regulator-gpio"))
	io.Set("gpios", fdt.CellValue(6, 3, 0))
	io.Set("phandle", fdt.CellValue(9))
	sym := r.AddChild("__symbols__")
	sym.Set("sdio1", fdt.StringValue("/soc@107c000000/mmc@fff000"))
	t.Reindex()
	return t
}

func index(t *testing.T) *kmod.Index {
	t.Helper()
	x := kmod.NewIndex()
	aliases := `alias of:N*T*Cbrcm,bcm2712-sdhciC* sdhci_brcmstb
alias of:N*T*Cregulator-fixed fixed
alias of:N*T*Cregulator-gpio gpio_regulator
alias of:N*T*Cbrcm,brcmstb-gpio gpio_brcmstb
alias of:N*T*Cbrcm,bcm2712c0-pinctrl pinctrl_brcmstb_bcm2712
alias of:N*T*Cbrcm,bcm2712c0-aon-pinctrl pinctrl_brcmstb_bcm2712
alias of:N*T*Ctest,nexus nexus
`
	if err := x.ReadAlias(strings.NewReader(aliases)); err != nil {
		t.Fatal(err)
	}
	deps := "kernel/sdhci-brcmstb.ko: kernel/sdhci-pltfm.ko\nkernel/sdhci-pltfm.ko:\n"
	if err := x.ReadDep(strings.NewReader(deps)); err != nil {
		t.Fatal(err)
	}
	x.ReadBuiltinModinfo([]byte("simple_pm_bus.alias=of:N*T*Csimple-bus\x00nexus.alias=of:N*T*Ctest,nexus\x00"))
	return x
}

func paths(needs []Need) []string {
	var out []string
	for _, n := range needs {
		out = append(out, n.Node.Path()+" <- "+n.Via)
	}
	return out
}

func TestSuppliers(t *testing.T) {
	tr := board()
	needs, errs := Suppliers(tr, tr.Symbol("sdio1"))
	if len(errs) > 0 {
		t.Fatalf("Suppliers errors: %v", errs)
	}
	want := []string{
		"/soc@107c000000/mmc@fff000 <- root device",
		"/soc@107c000000 <- parent bus",
		"/soc@107c000000/gpio@7d517c00 <- cd-gpios",
		"/clk-emmc2 <- clocks",
		"/soc@107c000000/intc-nexus <- interrupts",
		"/interrupt-controller@7fff9000 <- interrupt-map",
		"/soc@107c000000/pinctrl@7d504100 <- pinctrl-0",
		"/sd-vcc-reg <- vmmc-supply",
		"/sd-io-1v8-reg <- vqmmc-supply",
		"/soc@107c000000/pinctrl@7d510700 <- gpio-ranges",
	}
	if got := paths(needs); !reflect.DeepEqual(got, want) {
		t.Errorf("Suppliers =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if needs[6].Ref == nil || needs[6].Ref.BaseName() != "emmc-sd-default-state" {
		t.Errorf("pinctrl-0's Ref = %v, want the pin state node", needs[6].Ref)
	}
}

func TestCheck(t *testing.T) {
	all := map[string]bool{"sdhci_brcmstb": true, "sdhci_pltfm": true, "fixed": true, "gpio_regulator": true,
		"gpio_brcmstb": true, "pinctrl_brcmstb_bcm2712": true}
	without := func(drop ...string) map[string]bool {
		m := map[string]bool{}
		for k := range all {
			m[k] = true
		}
		for _, d := range drop {
			delete(m, d)
		}
		return m
	}
	tests := []struct {
		name      string
		initramfs map[string]bool
		tweak     func(*fdt.Tree)
		problems  []string // substrings, one per expected problem
	}{
		{name: "everything there", initramfs: all},
		{name: "the issue's Pi 5 initramfs", initramfs: without("fixed", "gpio_regulator", "gpio_brcmstb", "pinctrl_brcmstb_bcm2712"),
			problems: []string{
				"module gpio_brcmstb (for /soc@107c000000/gpio@7d517c00",
				"module pinctrl_brcmstb_bcm2712 (for /soc@107c000000/pinctrl@7d504100 [brcm,bcm2712c0-pinctrl], pinctrl-0 of /soc@107c000000/mmc@fff000 (-> /soc@107c000000/pinctrl@7d504100/emmc-sd-default-state))",
				"module fixed (for /sd-vcc-reg [regulator-fixed], vmmc-supply of /soc@107c000000/mmc@fff000)",
				"module gpio_regulator (for /sd-io-1v8-reg",
				"module pinctrl_brcmstb_bcm2712 (for /soc@107c000000/pinctrl@7d510700 [brcm,bcm2712c0-aon-pinctrl], gpio-ranges of /soc@107c000000/gpio@7d517c00)",
			}},
		{name: "only the pin controller behind gpio-ranges", initramfs: without("pinctrl_brcmstb_bcm2712"),
			tweak:    func(t *fdt.Tree) { t.Lookup("/soc/mmc@fff000").Set("pinctrl-0", nil) },
			problems: []string{"module pinctrl_brcmstb_bcm2712 (for /soc@107c000000/pinctrl@7d510700 [brcm,bcm2712c0-aon-pinctrl], gpio-ranges of"}},
		{name: "driver there, its dependency not", initramfs: without("sdhci_pltfm"),
			problems: []string{"module sdhci_pltfm (for /soc@107c000000/mmc@fff000"}},
		{name: "disabled supply", initramfs: all,
			tweak:    func(t *fdt.Tree) { t.Lookup("/sd-vcc-reg").Set("status", fdt.StringValue("disabled")) },
			problems: []string{"/sd-vcc-reg is needed (vmmc-supply of /soc@107c000000/mmc@fff000) but disabled"}},
		{name: "disabled clock is ignored, as by the kernel's device links", initramfs: all,
			tweak: func(t *fdt.Tree) { t.Lookup("/clk-emmc2").Set("status", fdt.StringValue("disabled")) }},
		{name: "dangling phandle", initramfs: all,
			tweak:    func(t *fdt.Tree) { t.Lookup("/soc/mmc@fff000").Set("resets", fdt.CellValue(99, 1)) },
			problems: []string{"resets: no node has phandle 0x63"}},
		{name: "missing #gpio-cells", initramfs: all,
			tweak: func(t *fdt.Tree) { t.Lookup("/soc/gpio@7d517c00").Delete("#gpio-cells") },
			problems: []string{"mmc@fff000: cd-gpios points at /soc@107c000000/gpio@7d517c00, which has no #gpio-cells",
				"/sd-vcc-reg: gpio points at", "/sd-io-1v8-reg: gpios points at"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := board()
			if tc.tweak != nil {
				tc.tweak(tr)
				tr.Reindex()
			}
			r := Check("test.dtb", tr, tr.Symbol("sdio1"), index(t), tc.initramfs)
			got := r.Problems()
			if len(got) != len(tc.problems) {
				t.Fatalf("Problems() =\n  %s\nwant %d problems", strings.Join(got, "\n  "), len(tc.problems))
			}
			for i, want := range tc.problems {
				if !strings.Contains(got[i], want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], want)
				}
			}
			if r.Failed() != (len(tc.problems) > 0) {
				t.Errorf("Failed() = %v with %d problems", r.Failed(), len(tc.problems))
			}
		})
	}
}

func TestRootDevice(t *testing.T) {
	rules, err := ParseRootRules(strings.NewReader("# comment\nbcm2712-*.dtb sdio1 # card\nbcm2711-*.dtb emmc2\n"))
	if err != nil {
		t.Fatal(err)
	}
	tr := board()
	if n, err := RootDevice(rules, "bcm2712-rpi-5-b.dtb", tr); err != nil || n.Path() != "/soc@107c000000/mmc@fff000" {
		t.Errorf("RootDevice(bcm2712) = %v, %v", n, err)
	}
	if _, err := RootDevice(rules, "bcm2711-rpi-4-b.dtb", tr); err == nil || !strings.Contains(err.Error(), `no label "emmc2"`) {
		t.Errorf("RootDevice without the label = %v", err)
	}
	if _, err := RootDevice(rules, "bcm2837-rpi-3-b.dtb", tr); err == nil || !strings.Contains(err.Error(), "no rule") {
		t.Errorf("RootDevice for an unlisted DTB = %v", err)
	}
	if _, err := ParseRootRules(strings.NewReader("one-field\n")); err == nil {
		t.Error("ParseRootRules accepted a line without a label")
	}
}

// TestRun runs the whole check as the image build does, on files.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("modules.alias", "alias of:N*T*Cbrcm,bcm2712-sdhci sdhci_brcmstb\nalias of:N*T*Cregulator-fixed fixed\nalias of:N*T*Cregulator-gpio gpio_regulator\n"+
		"alias of:N*T*Cbrcm,brcmstb-gpio gpio_brcmstb\nalias of:N*T*Cbrcm,bcm2712c0-pinctrl pinctrl_brcmstb_bcm2712\nalias of:N*T*Cbrcm,bcm2712c0-aon-pinctrl pinctrl_brcmstb_bcm2712\n")
	write("modules.dep", "")
	write("modules.builtin", "")
	write("modules.builtin.modinfo", "simple_pm_bus.alias=of:N*T*Csimple-bus\x00")
	rules := write("rootdev", "bcm2712-*.dtb sdio1\n")
	dtb := write("bcm2712-rpi-5-b.dtb", string(board().Encode()))
	list := "usr/lib/modules/7.3/kernel/drivers/mmc/host/sdhci-brcmstb.ko.xz\n"
	o := Options{ModulesDir: dir, InitramfsList: write("old.list", list), RootRules: rules, DTBs: []string{dtb}}
	var out bytes.Buffer
	err := Run(o, &out)
	if !errors.Is(err, ErrMissing) {
		t.Fatalf("Run with the old list = %v, want ErrMissing", err)
	}
	for _, m := range []string{"module fixed", "module gpio_regulator", "module gpio_brcmstb", "module pinctrl_brcmstb_bcm2712"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error does not name %s:\n%v", m, err)
		}
	}
	list += "usr/lib/modules/7.3/kernel/drivers/regulator/fixed.ko.xz\nusr/lib/modules/7.3/kernel/drivers/regulator/gpio-regulator.ko.xz\n" +
		"usr/lib/modules/7.3/kernel/drivers/gpio/gpio-brcmstb.ko.xz\nusr/lib/modules/7.3/kernel/drivers/pinctrl/bcm/pinctrl-brcmstb-bcm2712.ko.xz\n"
	o.InitramfsList = write("new.list", list)
	out.Reset()
	if err := Run(o, &out); err != nil {
		t.Fatalf("Run with the fixed list = %v\n%s", err, out.String())
	}
	if !strings.HasPrefix(out.String(), "ok: bcm2712-rpi-5-b.dtb") {
		t.Errorf("report = %q", out.String())
	}
	o.InitramfsList = write("empty.list", "init\nbin/sh\n")
	if err := Run(o, &out); err == nil || !strings.Contains(err.Error(), "names no kernel modules") {
		t.Errorf("Run with a listing without modules = %v", err)
	}
}
