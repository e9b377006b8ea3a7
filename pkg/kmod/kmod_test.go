package kmod

import (
	"reflect"
	"strings"
	"testing"
)

const aliasFile = `# Aliases extracted from modules themselves.
alias of:N*T*Cregulator-fixedC* fixed
alias of:N*T*Cregulator-fixed fixed
alias of:N*T*Cregulator-gpioC* gpio_regulator
alias of:N*T*Cregulator-gpio gpio_regulator
alias of:N*T*Cbrcm,bcm2711-emmc2C* sdhci_iproc
alias of:N*T*Cbrcm,bcm2711-emmc2 sdhci_iproc
alias of:N*T*Cbrcm,bcm2712-sdhciC* sdhci_brcmstb
alias of:N*T*Cbrcm,bcm2712-sdhci sdhci_brcmstb
alias of:N*T*Cbrcm,sdhci-brcmstb sdhci_brcmstb
alias pci:v00001DE4d00000001sv*sd*bc*sc*i* rp1_pci
alias of:N*T*C[bad broken
`

const dep = `kernel/drivers/regulator/fixed.ko.xz:
kernel/drivers/regulator/gpio-regulator.ko.xz:
kernel/drivers/mmc/host/sdhci-iproc.ko.xz: kernel/drivers/mmc/host/sdhci-pltfm.ko.xz kernel/drivers/mmc/host/sdhci.ko.xz
kernel/drivers/mmc/host/sdhci-pltfm.ko.xz: kernel/drivers/mmc/host/sdhci.ko.xz
kernel/drivers/mmc/host/sdhci.ko.xz: kernel/drivers/mmc/core/mmc_core.ko.xz
`

func index(t *testing.T) *Index {
	t.Helper()
	x := NewIndex()
	if err := x.ReadAlias(strings.NewReader(aliasFile)); err != nil {
		t.Fatal(err)
	}
	if err := x.ReadDep(strings.NewReader(dep)); err != nil {
		t.Fatal(err)
	}
	if err := x.ReadBuiltin(strings.NewReader("kernel/drivers/clk/bcm/clk-bcm2835.ko\nkernel/drivers/pinctrl/bcm/pinctrl-bcm2835.ko\n")); err != nil {
		t.Fatal(err)
	}
	x.ReadBuiltinModinfo([]byte("clk_bcm2835.alias=of:N*T*Cbrcm,bcm2711-cprmanC*\x00clk_bcm2835.alias=of:N*T*Cbrcm,bcm2711-cprman\x00" +
		"pinctrl_bcm2835.license=GPL\x00pinctrl_bcm2835.alias=of:N*T*Cbrcm,bcm2711-gpio\x00garbage\x00"))
	return x
}

func TestLookup(t *testing.T) {
	x := index(t)
	tests := []struct {
		name       string
		compatible []string
		want       Match
	}{
		{"loadable", []string{"regulator-fixed"}, Match{Modules: []string{"fixed"}}},
		{"dash in module name", []string{"regulator-gpio"}, Match{Modules: []string{"gpio_regulator"}}},
		{"second compatible matches", []string{"brcm,bcm2712-sdhci", "brcm,sdhci-brcmstb"}, Match{Modules: []string{"sdhci_brcmstb"}}},
		{"built in", []string{"brcm,bcm2711-cprman"}, Match{Builtin: []string{"clk_bcm2835"}}},
		{"built in, last compatible", []string{"raspberrypi,x", "brcm,bcm2711-gpio"}, Match{Builtin: []string{"pinctrl_bcm2835"}}},
		{"no driver", []string{"simple-bus"}, Match{}},
		{"prefix is not a match", []string{"regulator-fixed-clock-x"}, Match{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := x.Lookup(Modalias("node", "", tc.compatible))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Lookup(%q) = %+v, want %+v", tc.compatible, got, tc.want)
			}
		})
	}
}

func TestBuiltinAndDeps(t *testing.T) {
	x := index(t)
	if !x.Builtin("clk-bcm2835") || !x.Builtin("pinctrl_bcm2835") || x.Builtin("fixed") {
		t.Errorf("Builtin wrong")
	}
	if got, want := x.Deps("sdhci-iproc"), []string{"mmc_core", "sdhci", "sdhci_pltfm"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Deps(sdhci-iproc) = %q, want %q", got, want)
	}
	if got := x.Deps("fixed"); len(got) != 0 {
		t.Errorf("Deps(fixed) = %q, want none", got)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/mmc/host/sdhci-iproc.ko.xz": "sdhci_iproc",
		"usr/lib/modules/7.3/kernel/x/fixed.ko.zst": "fixed",
		"gpio-regulator.ko":                         "gpio_regulator",
		"pinctrl-brcmstb-bcm2712":                   "pinctrl_brcmstb_bcm2712",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadAliasRejectsGarbage(t *testing.T) {
	if err := NewIndex().ReadAlias(strings.NewReader("alias only-two\n")); err == nil {
		t.Error("ReadAlias accepted a line without a module")
	}
}
