package bootconfig

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The units and this package must agree on the image's paths and on the
// rule that a wrong boot file does not keep the daemon from starting.
func TestUnitsMatchContract(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("..", "..", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	daemon, boot := read("peerlined.service"), read("peerline-boot.service")
	for _, tc := range []struct {
		unit, name, re string
	}{
		{boot, "boot step reads the documented file", `(?m)^ExecStart=/usr/bin/peerlined -boot-config ` + regexp.QuoteMeta(DefaultBootFile) + ` -config /data/peerline/peerlined.json$`},
		{boot, "boot step runs before networkd and Wi-Fi", `(?m)^Before=.*systemd-networkd\.service.*wpa_supplicant@wlan0\.service`},
		{boot, "boot step keeps /run/peerline", `(?m)^RuntimeDirectoryPreserve=yes$`},
		{daemon, "daemon only wants the boot step", `(?m)^Wants=peerline-boot\.service$`},
		{daemon, "daemon starts after the boot step", `(?m)^After=peerline-boot\.service$`},
		{daemon, "daemon keeps /run/peerline", `(?m)^RuntimeDirectoryPreserve=yes$`},
		{daemon, "daemon runs the applied config", `(?m)^ExecStart=/usr/bin/peerlined -config /data/peerline/peerlined.json$`},
		{daemon, "daemon may write the state dir", `(?m)^ReadWritePaths=-/data/peerline$`},
		{daemon, "the console's settings may write peerline.txt", `(?m)^ReadWritePaths=-/boot/firmware$`},
		{boot, "boot step may remove admin_password from peerline.txt", `(?m)^ReadWritePaths=-/boot/firmware$`},
	} {
		if !regexp.MustCompile(tc.re).MatchString(tc.unit) {
			t.Errorf("%s: no line matching %s", tc.name, tc.re)
		}
	}
	if regexp.MustCompile(`(?m)^(Requires|BindsTo|Requisite)=.*peerline-boot`).MatchString(daemon) {
		t.Error("peerlined.service requires peerline-boot.service: a wrong peerline.txt would keep the daemon and its status page down")
	}
	for _, p := range []string{DefaultWPAFile, DefaultErrorFile} {
		if !strings.HasPrefix(p, "/run/peerline/") {
			t.Errorf("%s is outside /run/peerline, the RuntimeDirectory both units share", p)
		}
	}
}
