package bootconfig

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peerline/peerline/pkg/config"
)

// testOpts returns options pointing every path into a fresh directory.
func testOpts(t *testing.T, boot string) ApplyOptions {
	t.Helper()
	dir := t.TempDir()
	o := ApplyOptions{
		BootFile:   filepath.Join(dir, "boot", "peerline.txt"),
		ConfigPath: filepath.Join(dir, "data", "peerline", "peerlined.json"),
		NetworkDir: filepath.Join(dir, "run", "systemd", "network"),
		WPAFile:    filepath.Join(dir, "run", "peerline", "wpa_supplicant-wlan0.conf"),
		ErrorFile:  filepath.Join(dir, "run", "peerline", "boot-config-error"),
		PhonePort:  "eth0",
	}
	if boot != "" {
		if err := os.MkdirAll(filepath.Dir(o.BootFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(o.BootFile, []byte(boot), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// existing is a config as pairing leaves it: a peer, lines, a custom port.
const existing = `{
  "name": "old",
  "listen_port": 40000,
  "phone_port": "eth0",
  "lines": [3],
  "peers": [{"index": 2, "name": "grandma", "public_key": "Y9//y9jiDSs1pIpWEtgYbJYWCjgZwXRRhhcrL4bDhzc=", "endpoint": "198.51.100.7:51820"}],
  "rendezvous": [{"address": "old.example.org:3478", "key": "BRCFwAqP3Au4JHj3IbPiEJ8tfwTlZuv8oUsvNwVgZok="}]
}
`

func loadConfig(t *testing.T, path string) *config.Config {
	t.Helper()
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("daemon config after Apply: %v", err)
	}
	return c
}

func TestApply(t *testing.T) {
	o := testOpts(t, good)
	if err := os.MkdirAll(filepath.Dir(o.ConfigPath), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(o.ConfigPath, []byte(existing), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(o.ErrorFile), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(o.ErrorFile, []byte("stale problem"), 0o644)

	if err := Apply(o); err != nil {
		t.Fatalf("Apply = %v", err)
	}
	c := loadConfig(t, o.ConfigPath)
	if c.Name != "kitchen" || c.Phones.TimeZone != "Europe/Berlin" || c.Phones.DHCP ||
		!slices.Equal(c.Lines, []int{1, 2}) || len(c.Rendezvous) != 3 || c.StateDir != filepath.Dir(o.ConfigPath) || c.RunDir != filepath.Dir(o.ErrorFile) || c.PhonePort != "eth0" {
		t.Errorf("merged config = %+v; want the boot file's settings", c)
	}
	if len(c.Peers) != 1 || c.Peers[0].Name != "grandma" || c.ListenPort != 40000 {
		t.Errorf("merged config lost what the boot file does not own: peers %+v, listen_port %d", c.Peers, c.ListenPort)
	}
	// Defaults the daemon fills in are not written into the file.
	raw, _ := os.ReadFile(o.ConfigPath)
	if bytes.Contains(raw, []byte(`"mtu"`)) || bytes.Contains(raw, []byte(`"private_key_file"`)) {
		t.Errorf("Apply wrote the daemon's defaults into the config:\n%s", raw)
	}
	checkMode(t, o.ConfigPath, 0o600)
	checkMode(t, o.WPAFile, 0o600)
	if _, err := os.Stat(o.ErrorFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error file still there after a good boot config (%v)", err)
	}
	wpa, _ := os.ReadFile(o.WPAFile)
	wantPSK, _ := PSK(`pa"ss#word = 1`, `My "Home" #1`)
	for _, want := range []string{"country=DE\n", "\tssid=4d792022486f6d6522202331\n", "psk=" + wantPSK + "\n"} {
		if !strings.Contains(string(wpa), want) {
			t.Errorf("wpa_supplicant file lacks %q:\n%s", want, wpa)
		}
	}
	if strings.Contains(string(wpa), "pa\"ss") {
		t.Errorf("wpa_supplicant file holds the password in clear:\n%s", wpa)
	}
	nd, _ := os.ReadFile(filepath.Join(o.NetworkDir, NetworkFile))
	if !strings.Contains(string(nd), "Name=wlan0\n") || !strings.Contains(string(nd), "DHCP=yes\n") {
		t.Errorf("networkd file:\n%s\nwant DHCP on wlan0", nd)
	}

	// Applying the same file again changes nothing on the SD card.
	fi1, _ := os.Stat(o.ConfigPath)
	if err := Apply(o); err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(o.ConfigPath)
	if !fi1.ModTime().Equal(fi2.ModTime()) || !os.SameFile(fi1, fi2) {
		t.Error("a second Apply of the same file rewrote the config")
	}
}

// A wrong file changes nothing: the config stays byte for byte, the error
// file names the line, the uplink comes up as the last good file said.
func TestApplyWrongFileKeepsConfig(t *testing.T) {
	o := testOpts(t, "uplink_interface = eth1\nuplink_address = 192.168.1.50/24\nuplink_gateway = 192.168.1.1\nname = first\n")
	if err := Apply(o); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(o.ConfigPath)
	os.WriteFile(o.BootFile, []byte("uplink_interface = eth1\nname = second\nlines = 0\n"), 0o644)
	err := Apply(o)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Apply(wrong file) = %v, want an *Error", err)
	}
	after, _ := os.ReadFile(o.ConfigPath)
	if !bytes.Equal(before, after) {
		t.Errorf("config changed by a wrong boot file:\n%s\nwas\n%s", after, before)
	}
	msg, rerr := os.ReadFile(o.ErrorFile)
	if rerr != nil || !strings.Contains(string(msg), "line 3: lines:") || !strings.Contains(string(msg), "Fix:") {
		t.Errorf("error file = %q, %v; want the line, the problem and the fix", msg, rerr)
	}
	nd, _ := os.ReadFile(filepath.Join(o.NetworkDir, NetworkFile))
	if !strings.Contains(string(nd), "Address=192.168.1.50/24\n") {
		t.Errorf("networkd file after a wrong boot file:\n%s\nwant the last good static address", nd)
	}
}

// On a first boot with a wrong file the daemon still needs a config to
// start with, so that its status page can show the problem.
func TestApplyWrongFileFirstBoot(t *testing.T) {
	o := testOpts(t, "wifi_ssid = home\nwifi_password = short\nwifi_country = DE\n")
	if err := Apply(o); err == nil {
		t.Fatal("Apply(wrong file) = nil")
	}
	c := loadConfig(t, o.ConfigPath)
	if c.Name != "peerline" || !c.Phones.DHCP || c.PhonePort != "eth0" || len(c.Lines) != 0 {
		t.Errorf("first-boot default config = %+v", c)
	}
	if _, err := os.Stat(o.WPAFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Wi-Fi file written from a wrong boot file (%v)", err)
	}
	if _, err := os.Stat(o.ErrorFile); err != nil {
		t.Errorf("no error file: %v", err)
	}
}

func TestApplyMissingFile(t *testing.T) {
	o := testOpts(t, "")
	if err := Apply(o); err != nil {
		t.Fatalf("Apply without a boot file = %v, want nil (dev image)", err)
	}
	loadConfig(t, o.ConfigPath)
	nd, _ := os.ReadFile(filepath.Join(o.NetworkDir, NetworkFile))
	if !strings.Contains(string(nd), "Name=wlan0\n") {
		t.Errorf("networkd file without a boot file:\n%s", nd)
	}
}

// Wi-Fi removed from the file: the old wpa_supplicant file goes too.
func TestApplyRemovesWiFi(t *testing.T) {
	o := testOpts(t, good)
	if err := Apply(o); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(o.BootFile, []byte("uplink_interface = eth1\n"), 0o644)
	if err := Apply(o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(o.WPAFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Wi-Fi file kept after the Wi-Fi settings were removed (%v)", err)
	}
	// Settings the file no longer gives keep their value.
	if c := loadConfig(t, o.ConfigPath); c.Name != "kitchen" {
		t.Errorf("name = %q after the name line was removed, want it kept", c.Name)
	}
}

func TestApplyDamagedConfig(t *testing.T) {
	o := testOpts(t, "uplink_interface = eth1\n")
	os.MkdirAll(filepath.Dir(o.ConfigPath), 0o700)
	os.WriteFile(o.ConfigPath, []byte("{not json"), 0o600)
	if err := Apply(o); err == nil {
		t.Fatal("Apply over a damaged config = nil, want an error")
	}
	if b, _ := os.ReadFile(o.ConfigPath); string(b) != "{not json" {
		t.Errorf("damaged config was overwritten: %q", b)
	}
}

func TestApplyPhoneDHCPOffGivesLineOne(t *testing.T) {
	o := testOpts(t, "uplink_interface = eth1\nphone_dhcp = no\n")
	if err := Apply(o); err != nil {
		t.Fatal(err)
	}
	if c := loadConfig(t, o.ConfigPath); !slices.Equal(c.Lines, []int{1}) {
		t.Errorf("lines = %v with phone_dhcp = no and no lines given, want [1]", c.Lines)
	}
}

func TestNetworkdStatic(t *testing.T) {
	f, err := Parse([]byte("uplink_interface = eth1\nuplink_address = 192.168.1.50/24\nuplink_gateway = 192.168.1.1\nuplink_dns = 9.9.9.9\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := NetworkdConfig(f.Uplink)
	want := generatedHeader + "\n[Match]\nName=eth1\n\n[Network]\nAddress=192.168.1.50/24\nGateway=192.168.1.1\nDNS=9.9.9.9\n"
	if got != want {
		t.Errorf("NetworkdConfig =\n%s\nwant\n%s", got, want)
	}
}

func TestPSK(t *testing.T) {
	tests := []struct{ pass, ssid, want string }{
		// IEEE 802.11i-2004, H.4.
		{"password", "IEEE", "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"},
		{"ThisIsAPassword", "ThisIsASSID", "0dc0d6eb90555ed6419756b9a15ec3e3209b63df707dd508d14581f8982721af"},
		{strings.Repeat("AB", 32), "any", strings.Repeat("ab", 32)},
	}
	for _, tc := range tests {
		got, err := PSK(tc.pass, tc.ssid)
		if err != nil || got != tc.want {
			t.Errorf("PSK(%q, %q) = %s, %v; want %s", tc.pass, tc.ssid, got, err, tc.want)
		}
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s mode = %v, want %v", filepath.Base(path), fi.Mode().Perm(), want)
	}
}
