package bootconfig

import (
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/nodekey"
)

const good = `# comment
name = kitchen
wifi_ssid = My "Home" #1
wifi_password = pa"ss#word = 1
wifi_country = de
rendezvous = rv1.example.org:3478 6byXW6RgSxwspuDs35smPGK/uwjTAEUcqNGZ18ijx30=, 198.51.100.7:3478 BRCFwAqP3Au4JHj3IbPiEJ8tfwTlZuv8oUsvNwVgZok=
rendezvous = [2001:db8::1]:3478 6byXW6RgSxwspuDs35smPGK/uwjTAEUcqNGZ18ijx30=
time_zone = Europe/Berlin
phone_dhcp = no
lines = 1, 2
`

func TestParseGood(t *testing.T) {
	f, err := Parse([]byte(good))
	if err != nil {
		t.Fatalf("Parse = %v", err)
	}
	no := false
	want := &File{
		Name: "kitchen",
		WiFi: &WiFi{SSID: `My "Home" #1`, Password: `pa"ss#word = 1`, Country: "DE"},
		Rendezvous: []config.Rendezvous{
			{Address: "rv1.example.org:3478", Key: mustKey(t, "6byXW6RgSxwspuDs35smPGK/uwjTAEUcqNGZ18ijx30=")},
			{Address: "198.51.100.7:3478", Key: mustKey(t, "BRCFwAqP3Au4JHj3IbPiEJ8tfwTlZuv8oUsvNwVgZok=")},
			{Address: "[2001:db8::1]:3478", Key: mustKey(t, "6byXW6RgSxwspuDs35smPGK/uwjTAEUcqNGZ18ijx30=")},
		},
		Uplink:    Uplink{Interface: "wlan0"},
		TimeZone:  "Europe/Berlin",
		PhoneDHCP: &no,
		Lines:     []int{1, 2},
	}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("Parse = %+v\nwant %+v", f, want)
	}
}

// What Windows Notepad makes of the same file must read the same.
func TestParseWindowsForms(t *testing.T) {
	want, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	crlf := strings.ReplaceAll(good, "\n", "  \r\n")
	utf16le := []byte{0xFF, 0xFE}
	for _, r := range "\ufeff" + crlf {
		utf16le = append(utf16le, byte(r), byte(r>>8))
	}
	utf16le = utf16le[:2+len(utf16le)-4] // drop the BOM written as text
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"crlf and trailing spaces", []byte(crlf)},
		{"utf-8 bom", append([]byte{0xEF, 0xBB, 0xBF}, crlf...)},
		{"utf-16le bom", append([]byte{0xFF, 0xFE}, utf16le[2+2:]...)},
		{"upper-case keys, quotes", []byte(strings.ReplaceAll(strings.ReplaceAll(good, "name = kitchen", `NAME = "kitchen"`), "wifi_country", "Wifi_Country"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse = %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestParseUplink(t *testing.T) {
	f, err := Parse([]byte("uplink_interface = eth1\nuplink_address = 192.168.1.50/24\nuplink_gateway = 192.168.1.1\nuplink_dns = 192.168.1.1, 2001:db8::53\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Uplink{
		Interface: "eth1",
		Address:   netip.MustParsePrefix("192.168.1.50/24"),
		Gateway:   netip.MustParseAddr("192.168.1.1"),
		DNS:       []netip.Addr{netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("2001:db8::53")},
	}
	if !reflect.DeepEqual(f.Uplink, want) {
		t.Errorf("Uplink = %+v, want %+v", f.Uplink, want)
	}
}

func TestParseProblems(t *testing.T) {
	const wifi = "wifi_ssid = x\nwifi_password = 12345678\nwifi_country = DE\n"
	tests := []struct {
		name string
		in   string
		line int
		key  string
		// want appears in the problem's text (what or fix).
		want string
	}{
		{"unknown key with suggestion", wifi + "wifi_pasword = x\n", 4, "", `did you mean "wifi_password"`},
		{"no equals sign", wifi + "hunter2hunter2\n", 4, "", "key = value"},
		{"short password", "wifi_ssid = x\nwifi_password = short\nwifi_country = DE\n", 2, "wifi_password", "8 to 63"},
		{"non-ascii password", "wifi_ssid = x\nwifi_password = pässwörter\nwifi_country = DE\n", 2, "wifi_password", "printable ASCII"},
		{"long ssid", "wifi_ssid = " + strings.Repeat("x", 33) + "\nwifi_password = 12345678\nwifi_country = DE\n", 1, "wifi_ssid", "at most 32"},
		{"bad country", "wifi_ssid = x\nwifi_password = 12345678\nwifi_country = Germany\n", 3, "wifi_country", "two-letter"},
		{"missing country", "wifi_ssid = x\nwifi_password = 12345678\n", 1, "wifi_country", "add wifi_country"},
		{"missing password", "wifi_ssid = x\nwifi_country = DE\n", 1, "wifi_password", "add wifi_password"},
		{"no wifi on wlan0", "name = x\n", 0, "wifi_ssid", "uplink_interface = eth1"},
		{"wifi with eth1", wifi + "uplink_interface = eth1\n", 4, "uplink_interface", "remove"},
		{"duplicate", wifi + "name = a\nname = b\n", 5, "name", "first on line 4"},
		{"bad name", wifi + "name = <script>\n", 4, "name", "letters, digits"},
		{"rendezvous no port", wifi + "rendezvous = rv.example.org\n", 4, "rendezvous", "host:port"},
		{"rendezvous bad port", wifi + "rendezvous = rv.example.org:99999\n", 4, "rendezvous", "1 to 65535"},
		{"inline comment", wifi + "rendezvous = rv.example.org:3478 # main\n", 4, "rendezvous", "own"},
		{"rendezvous no key", wifi + "rendezvous = rv.example.org:3478\n", 4, "rendezvous", "rendezvousd -public-key"},
		{"rendezvous bad key", wifi + "rendezvous = rv.example.org:3478 notakey\n", 4, "rendezvous", "rendezvousd -public-key"},
		{"bad address", "uplink_interface = eth1\nuplink_address = 192.168.1.50\nuplink_gateway = 192.168.1.1\n", 2, "uplink_address", "prefix length"},
		{"network address", "uplink_interface = eth1\nuplink_address = 192.168.1.0/24\nuplink_gateway = 192.168.1.1\n", 2, "uplink_address", "192.168.1.1/24"},
		{"gateway outside", "uplink_interface = eth1\nuplink_address = 192.168.1.50/24\nuplink_gateway = 192.168.2.1\n", 3, "uplink_gateway", "not inside 192.168.1.0/24"},
		{"gateway alone", "uplink_interface = eth1\nuplink_gateway = 192.168.2.1\n", 2, "uplink_gateway", "without uplink_address"},
		{"address alone", "uplink_interface = eth1\nuplink_address = 192.168.1.50/24\n", 2, "uplink_gateway", "router"},
		{"bad dns", "uplink_interface = eth1\nuplink_dns = 1.1.1.1, dns.example\n", 2, "uplink_dns", "not an IP"},
		{"time zone typo", wifi + "time_zone = Europe/Berln\n", 4, "time_zone", "tz database"},
		{"time zone local", wifi + "time_zone = Local\n", 4, "time_zone", "not a time zone"},
		{"phone_dhcp maybe", wifi + "phone_dhcp = maybe\n", 4, "phone_dhcp", "neither yes nor no"},
		{"line zero", wifi + "lines = 0\n", 4, "lines", "1 to 254"},
		{"line twice", wifi + "lines = 1,1\n", 4, "lines", "twice"},
		{"latin-1", wifi + "name = K\xfcche\n", 4, "", "UTF-8"},
		{"too big", strings.Repeat("#", MaxSize+1), 0, "", "more than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("Parse = %v, want an *Error", err)
			}
			for _, p := range e.Problems {
				if p.Line == tc.line && p.Key == tc.key && strings.Contains(p.String(), tc.want) {
					return
				}
			}
			t.Errorf("Parse problems = %q, want one on line %d, key %q, saying %q", e.Problems, tc.line, tc.key, tc.want)
		})
	}
}

// A password on a line of its own must not be echoed into the status page.
func TestProblemDoesNotEchoStrayLine(t *testing.T) {
	_, err := Parse([]byte("wifi_ssid = x\nwifi_password = 12345678\nwifi_country = DE\nSecretPassw0rd\n"))
	if err == nil || strings.Contains(err.Error(), "SecretPassw0rd") {
		t.Errorf("Parse = %v; want an error that does not repeat the line", err)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte("nam = x\nwifi_ssid = x\nwifi_password = short\nwifi_country = DE\nlines = 0\n"))
	e, ok := err.(*Error)
	if !ok || len(e.Problems) != 3 {
		t.Fatalf("Parse = %v, want 3 problems (key, password, lines)", err)
	}
	lines := []int{}
	for _, p := range e.Problems {
		lines = append(lines, p.Line)
	}
	if !slices.Equal(lines, []int{1, 3, 5}) {
		t.Errorf("problem lines = %v, want [1 3 5]", lines)
	}
}

// The example shipped on the boot partition must parse, and once every
// setting in it is uncommented it must still parse: the examples it gives
// are valid values.
func TestShippedExample(t *testing.T) {
	b, err := os.ReadFile("../../board/rpi/peerline.txt")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(example) = %v", err)
	}
	if !reflect.DeepEqual(f, &File{Uplink: Uplink{Interface: DefaultUplink}}) {
		t.Errorf("Parse(example) = %+v, want nothing set: every setting in it is commented out", f)
	}
	var uncommented []string
	documented := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		k, _, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = ")
		if ok && slices.Contains(keys, k) {
			documented[k] = true
			// The example offers two uplinks; try the Wi-Fi one.
			if k == "uplink_interface" || k == "uplink_address" || k == "uplink_gateway" {
				continue
			}
			uncommented = append(uncommented, strings.TrimPrefix(line, "# "))
		}
	}
	for _, k := range keys {
		if !documented[k] {
			t.Errorf("the example does not show %s", k)
		}
	}
	if _, err := Parse([]byte(strings.Join(uncommented, "\n"))); err != nil {
		t.Errorf("the example's values do not parse: %v", err)
	}
	wired := "uplink_interface = eth1\nuplink_address = 192.168.1.50/24\nuplink_gateway = 192.168.1.1\n"
	if _, err := Parse([]byte(wired)); err != nil {
		t.Errorf("the example's wired uplink does not parse: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("\xef\xbb\xbfname = x\r\nuplink_interface = eth1\r\n"))
	f.Add([]byte("\xff\xfen\x00=\x00"))
	f.Add([]byte("uplink_interface = eth1\nuplink_address = 192.168.1.50/24\nuplink_gateway = 192.168.1.1\n"))
	if b, err := os.ReadFile("../../board/rpi/peerline.txt"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			e, ok := err.(*Error)
			if !ok || len(e.Problems) == 0 || len(e.Problems) > maxProblems {
				t.Fatalf("Parse error %v: want an *Error with 1 to %d problems", err, maxProblems)
			}
			return
		}
		// Whatever parses must produce files the daemon's programs accept
		// without further checks.
		// (PSK itself is left out: 4096 rounds of PBKDF2 per input would
		// slow the fuzzer a hundredfold.)
		if w := file.WiFi; w != nil {
			if !countryRE.MatchString(w.Country) || len(w.SSID) == 0 || len(w.SSID) > 32 {
				t.Fatalf("Wi-Fi %+v passed Parse", w)
			}
			if !hexPSKRE.MatchString(w.Password) && (len(w.Password) < 8 || len(w.Password) > 63 || strings.ContainsFunc(w.Password, func(r rune) bool { return r < 0x20 || r > 0x7e })) {
				t.Fatalf("password %q passed Parse", w.Password)
			}
		}
		nd := NetworkdConfig(file.Uplink)
		if strings.Count(nd, "\n") != strings.Count(NetworkdConfig(Uplink{Interface: "x", Address: file.Uplink.Address, Gateway: file.Uplink.Gateway, DNS: file.Uplink.DNS}), "\n") {
			t.Fatalf("interface name %q adds lines to the networkd file", file.Uplink.Interface)
		}
	})
}

func mustKey(t *testing.T, s string) nodekey.Key {
	t.Helper()
	k, err := nodekey.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
