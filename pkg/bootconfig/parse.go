// Package bootconfig reads peerline.txt, the plain-text file on the SD
// card's FAT partition that people edit on any PC before the first boot
// (Wi-Fi, node name, rendezvous servers, a static uplink address), and
// applies it on every boot: into the daemon's JSON config, a
// systemd-networkd file for the uplink and a wpa_supplicant file.
//
// The file comes from a text editor on someone's PC, so the parser is
// lenient about form (Windows line ends, a UTF-8 or UTF-16 byte order mark,
// spaces, upper-case keys, quotes around values) and strict about content:
// an unknown key or a bad value is an error that names the line and says
// what to write. A wrong setting is never guessed around, because the person
// who can fix it is looking at the status page, not at a shell.
package bootconfig

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	// The zone names are checked against the tz database; the image has no
	// /usr/share/zoneinfo, and a typo would silently give the phones UTC.
	_ "time/tzdata"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/peerline/peerline/pkg/adminpass"
	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/invite"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/numplan"
)

// MaxSize bounds the file; the documented example is a few KiB.
const MaxSize = 64 << 10

// maxProblems bounds the list of problems reported at once.
const maxProblems = 20

// DefaultUplink is the uplink interface when the file names none: the Pi's
// Wi-Fi, because its Ethernet port is the phone port.
const DefaultUplink = "wlan0"

// File is a parsed boot config. Fields a file leaves out are zero (nil for
// slices and pointers), so that Apply keeps what the config had.
type File struct {
	Name string
	WiFi *WiFi
	// Rendezvous servers, in the order given.
	Rendezvous []config.Rendezvous
	Uplink     Uplink
	// TimeZone is an IANA zone name for the phones.
	TimeZone string
	// PhoneDHCP is nil when phone_dhcp is not given.
	PhoneDHCP *bool
	// Lines are the static phone lines; nil when not given, empty for
	// "lines = none".
	Lines []int
	// AdminPassword sets or resets the web console's password; Apply
	// stores its hash and removes the line from the card.
	AdminPassword string
	// Join is an invite code to pair with at the next start, once.
	Join string
}

// WiFi is the uplink's Wi-Fi network (WPA2-PSK).
type WiFi struct {
	SSID string
	// Password is the passphrase (8 to 63 characters) or, if 64 hex
	// digits, the PSK itself.
	Password string
	// Country is the ISO 3166-1 code, upper case, for the regulatory
	// domain: which channels and power the radio may use.
	Country string
}

// Uplink is the interface towards the Internet and how it gets an address.
type Uplink struct {
	Interface string
	// Address is a static address with its prefix length; invalid (the
	// zero Prefix) means DHCP.
	Address netip.Prefix
	Gateway netip.Addr
	// DNS servers; with DHCP they are used besides the ones it offers.
	DNS []netip.Addr
}

// Problem is one thing wrong with the file, said so that someone with a
// text editor can fix it.
type Problem struct {
	// Line is 1-based; 0 for something missing from the whole file.
	Line int
	Key  string
	// What is wrong, and Fix what to write instead.
	What, Fix string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.What)
	if p.Fix != "" {
		b.WriteString(". Fix: " + p.Fix)
	}
	return b.String()
}

// Error lists every problem found in a file.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0].String()
	}
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return fmt.Sprintf("%d problems: %s", len(e.Problems), strings.Join(parts, "; "))
}

// keys lists every key the file may hold, in the documented order.
var keys = []string{
	"name", "wifi_ssid", "wifi_password", "wifi_country", "rendezvous",
	"uplink_interface", "uplink_address", "uplink_gateway", "uplink_dns",
	"time_zone", "phone_dhcp", "lines", "admin_password", "join",
}

// secretKeys are the keys whose values never leave the card: Apply removes
// them from the file once applied, and Redact hides them in copies.
var secretKeys = []string{"wifi_password", "admin_password", "join"}

var (
	ifnameRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	countryRE  = regexp.MustCompile(`^[A-Z]{2}$`)
	hexPSKRE   = regexp.MustCompile(`^[0-9A-Fa-f]{64}$`)
	hostnameRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	// The same shape pkg/config accepts, so that a zone passing here also
	// passes the daemon's check.
	timeZoneRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$`)
)

// parser collects values and problems line by line.
type parser struct {
	f        File
	seen     map[string]int // key -> line it was first set on
	problems []Problem
}

func (p *parser) problem(line int, key, what, fix string) {
	if len(p.problems) < maxProblems {
		p.problems = append(p.problems, Problem{Line: line, Key: key, What: what, Fix: fix})
	}
}

// Parse reads a boot config. A non-nil error is an *Error listing every
// problem (up to 20).
func Parse(b []byte) (*File, error) {
	if len(b) > MaxSize {
		return nil, &Error{Problems: []Problem{{What: fmt.Sprintf("the file is %d bytes, more than the %d a boot config can be", len(b), MaxSize),
			Fix: "start again from the example peerline.txt"}}}
	}
	text, err := decodeText(b)
	if err != nil {
		return nil, &Error{Problems: []Problem{{What: err.Error(), Fix: "save the file as UTF-8 (in Notepad: File, Save as, Encoding UTF-8)"}}}
	}
	p := &parser{seen: map[string]int{}}
	p.f.Uplink.Interface = DefaultUplink
	for n, line := range strings.Split(text, "\n") {
		p.line(n+1, line)
	}
	p.finish()
	if len(p.problems) > 0 {
		return nil, &Error{Problems: p.problems}
	}
	return &p.f, nil
}

// decodeText strips a byte order mark and returns the text as UTF-8,
// decoding UTF-16, which Windows editors write when told "Unicode".
func decodeText(b []byte) (string, error) {
	switch {
	case bytes.HasPrefix(b, []byte{0xEF, 0xBB, 0xBF}):
		b = b[3:]
	case bytes.HasPrefix(b, []byte{0xFF, 0xFE}), bytes.HasPrefix(b, []byte{0xFE, 0xFF}):
		le := b[0] == 0xFF
		b = b[2:]
		if len(b)%2 != 0 {
			return "", errors.New("the file is UTF-16 but has an odd number of bytes")
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			if le {
				u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
			} else {
				u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
			}
		}
		return string(utf16.Decode(u)), nil
	}
	return string(b), nil
}

func (p *parser) line(n int, raw string) {
	raw = strings.TrimSuffix(raw, "\r")
	if !utf8.ValidString(raw) {
		p.problem(n, "", "the line is not valid UTF-8 (the file was saved in another encoding)",
			"save the file as UTF-8 (in Notepad: File, Save as, Encoding UTF-8)")
		return
	}
	line := strings.TrimSpace(raw)
	if line == "" || line[0] == '#' || line[0] == ';' {
		return
	}
	k, v, ok := strings.Cut(line, "=")
	if !ok {
		// The line is not quoted back: it may be a password typed on a
		// line of its own, and the message ends up on the status page.
		p.problem(n, "", "the line has no = sign, so it is not a setting",
			"write settings as key = value, or start the line with # to make it a comment")
		return
	}
	key := strings.ToLower(strings.TrimSpace(k))
	val := unquote(strings.TrimSpace(v))
	if !slices.Contains(keys, key) {
		fix := "the keys are " + strings.Join(keys, ", ")
		if s := closest(key); s != "" {
			fix = fmt.Sprintf("did you mean %q? (%s)", s, fix)
		}
		p.problem(n, "", fmt.Sprintf("unknown key %q", clip(key)), fix)
		return
	}
	if val == "" {
		// "key =" with nothing after it is how the example leaves a
		// setting out; it means the same as no line at all.
		return
	}
	if first, dup := p.seen[key]; dup && key != "rendezvous" {
		p.problem(n, key, fmt.Sprintf("set again (first on line %d)", first), "keep only one "+key+" line")
		return
	}
	if _, dup := p.seen[key]; !dup {
		p.seen[key] = n
	}
	p.value(n, key, val)
}

// unquote removes one pair of double quotes around a value, which people
// add thinking they are needed. A value that really starts and ends with a
// quote is written inside another pair. Nothing inside is escaped, so a
// password with quotes, # or = in it is written as it is.
func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

func (p *parser) value(n int, key, v string) {
	f := &p.f
	commentHint := ""
	if strings.Contains(v, "#") && key != "wifi_password" && key != "wifi_ssid" && key != "admin_password" {
		commentHint = "; comments go on a line of their own, starting with #"
	}
	switch key {
	case "name":
		if err := checkName(v); err != nil {
			p.problem(n, key, err.Error(), "use up to 63 letters, digits, spaces and - _ . ' for example: name = kitchen"+commentHint)
			return
		}
		f.Name = v
	case "wifi_ssid":
		if len(v) > 32 {
			p.problem(n, key, fmt.Sprintf("%d bytes long; a Wi-Fi name has at most 32", len(v)), "write the network name exactly as your phone or PC shows it")
			return
		}
		p.wifi().SSID = v
	case "wifi_password":
		switch {
		case hexPSKRE.MatchString(v):
		case len(v) < 8 || len(v) > 63:
			p.problem(n, key, fmt.Sprintf("%d characters long; a WPA2 password has 8 to 63", utf8.RuneCountInString(v)),
				"write the Wi-Fi password exactly as it is, without quotes (or a 64-digit hex key)")
			return
		default:
			for _, r := range v {
				if r < 0x20 || r > 0x7e {
					p.problem(n, key, "contains a character outside printable ASCII, which WPA2 passwords cannot have",
						"check the password for accented letters or symbols copied by mistake")
					return
				}
			}
		}
		p.wifi().Password = v
	case "wifi_country":
		c := strings.ToUpper(v)
		if !countryRE.MatchString(c) {
			p.problem(n, key, fmt.Sprintf("%q is not a two-letter country code", clip(v)),
				"write where the Pi is, as a two-letter ISO code: wifi_country = DE (or GB, US, FR, ...)"+commentHint)
			return
		}
		p.wifi().Country = c
	case "rendezvous":
		const fix = "write the server's host:port and its key, e.g. rendezvous = rv.example.org:3478 <key>, with the key that `rendezvousd -public-key` prints on the server"
		for _, item := range strings.Split(v, ",") {
			fields := strings.Fields(item)
			if len(fields) == 0 {
				continue
			}
			hp := fields[0]
			if err := checkHostPort(hp); err != nil {
				p.problem(n, key, fmt.Sprintf("%q: %v", clip(hp), err), fix+commentHint)
				continue
			}
			if len(fields) != 2 {
				p.problem(n, key, fmt.Sprintf("%q: want the address and the server's key, separated by a space", clip(strings.TrimSpace(item))), fix+commentHint)
				continue
			}
			k, err := nodekey.Parse(fields[1])
			if err != nil || k.IsZero() {
				p.problem(n, key, fmt.Sprintf("%q is not a server key", clip(fields[1])), fix)
				continue
			}
			r := config.Rendezvous{Address: hp, Key: k}
			if !slices.Contains(f.Rendezvous, r) {
				f.Rendezvous = append(f.Rendezvous, r)
			}
		}
	case "uplink_interface":
		if !ifnameRE.MatchString(v) {
			p.problem(n, key, fmt.Sprintf("%q is not an interface name", clip(v)), "write wlan0 for the Wi-Fi or eth1 for a USB Ethernet adapter"+commentHint)
			return
		}
		f.Uplink.Interface = v
	case "uplink_address":
		pfx, err := netip.ParsePrefix(v)
		if err != nil || !pfx.Addr().IsGlobalUnicast() && !pfx.Addr().IsPrivate() || pfx.Addr().Zone() != "" {
			p.problem(n, key, fmt.Sprintf("%q is not an address with its prefix length", clip(v)),
				"write the Pi's address and the network size, e.g. uplink_address = 192.168.1.50/24, or leave it out for DHCP"+commentHint)
			return
		}
		if pfx.Addr() == pfx.Masked().Addr() && pfx.Bits() < pfx.Addr().BitLen()-1 {
			p.problem(n, key, fmt.Sprintf("%s is the network's own address, not one for the Pi", pfx.Addr()),
				"pick a free address inside the network, e.g. "+examplePrefix(pfx))
			return
		}
		f.Uplink.Address = pfx
	case "uplink_gateway":
		a, err := netip.ParseAddr(v)
		if err != nil || !a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLinkLocalUnicast() {
			p.problem(n, key, fmt.Sprintf("%q is not an IP address", clip(v)), "write your router's address, e.g. uplink_gateway = 192.168.1.1"+commentHint)
			return
		}
		f.Uplink.Gateway = a
	case "uplink_dns":
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
				p.problem(n, key, fmt.Sprintf("%q is not an IP address", clip(s)), "write DNS server addresses separated by commas, e.g. uplink_dns = 192.168.1.1, 9.9.9.9"+commentHint)
				return
			}
			f.Uplink.DNS = append(f.Uplink.DNS, a)
		}
	case "time_zone":
		if err := checkTimeZone(v); err != nil {
			p.problem(n, key, err.Error(), "write a zone from the tz database, e.g. time_zone = Europe/Berlin (or America/New_York, UTC)"+commentHint)
			return
		}
		f.TimeZone = v
	case "phone_dhcp":
		var on bool
		switch strings.ToLower(v) {
		case "yes", "true", "on", "1":
			on = true
		case "no", "false", "off", "0":
		default:
			p.problem(n, key, fmt.Sprintf("%q is neither yes nor no", clip(v)), "write phone_dhcp = yes (phones get their line automatically) or phone_dhcp = no"+commentHint)
			return
		}
		f.PhoneDHCP = &on
	case "admin_password":
		if err := adminpass.Check(v); err != nil {
			// The value is not quoted back: the message reaches the
			// status page.
			p.problem(n, key, err.Error(), "write the password for the web console exactly as you want it, at least 8 characters")
			return
		}
		f.AdminPassword = v
	case "join":
		if _, err := invite.Parse(v); err != nil {
			p.problem(n, key, err.Error(), "copy the code again from your friend's message, or leave join out and pair from the web console")
			return
		}
		f.Join = strings.TrimSpace(v)
	case "lines":
		lines := []int{}
		if strings.ToLower(v) != "none" {
			for _, s := range strings.Split(v, ",") {
				s = strings.TrimSpace(s)
				l, err := strconv.Atoi(s)
				if err != nil || !numplan.ValidLine(l) {
					p.problem(n, key, fmt.Sprintf("%q is not a line number", clip(s)),
						fmt.Sprintf("write line numbers from %d to %d separated by commas, e.g. lines = 1,2, or lines = none%s", numplan.MinLine, numplan.MaxLine, commentHint))
					return
				}
				if slices.Contains(lines, l) {
					p.problem(n, key, fmt.Sprintf("line %d is listed twice", l), "list each line once")
					return
				}
				lines = append(lines, l)
			}
		}
		f.Lines = lines
	}
}

func (p *parser) wifi() *WiFi {
	if p.f.WiFi == nil {
		p.f.WiFi = &WiFi{}
	}
	return p.f.WiFi
}

// finish checks what only the whole file can tell: settings that need each
// other.
func (p *parser) finish() {
	f := &p.f
	if w := f.WiFi; w != nil {
		if !p.set("wifi_ssid") {
			p.problem(p.lineOf("wifi_password", "wifi_country"), "wifi_ssid", "missing, but other wifi_ settings are given",
				"add wifi_ssid = <your Wi-Fi network's name>")
		}
		if !p.set("wifi_password") {
			p.problem(p.lineOf("wifi_ssid"), "wifi_password", "missing (open networks without a password are not supported)",
				"add wifi_password = <your Wi-Fi password>")
		}
		if !p.set("wifi_country") {
			p.problem(p.lineOf("wifi_ssid"), "wifi_country", "missing; the Wi-Fi radio needs to know which country's channels it may use",
				"add wifi_country = <two-letter code of the country the Pi is in>, e.g. DE")
		}
		if f.Uplink.Interface != DefaultUplink {
			p.problem(p.lineOf("uplink_interface"), "uplink_interface", fmt.Sprintf("%s, but Wi-Fi settings are given and Wi-Fi is %s", f.Uplink.Interface, DefaultUplink),
				"remove the uplink_interface line to use the Wi-Fi, or remove the wifi_ lines to use "+f.Uplink.Interface)
		}
	} else if f.Uplink.Interface == DefaultUplink && len(p.seen) > 0 {
		p.problem(0, "wifi_ssid", "missing; without it the Pi has no way to the Internet",
			"add wifi_ssid, wifi_password and wifi_country, or write uplink_interface = eth1 if the Internet comes through a USB Ethernet adapter")
	}
	u := f.Uplink
	if u.Gateway.IsValid() && !p.set("uplink_address") {
		p.problem(p.lineOf("uplink_gateway"), "uplink_gateway", "given without uplink_address (with DHCP the router tells the gateway)",
			"add uplink_address = <the Pi's address>/<prefix length>, or remove uplink_gateway")
	}
	if u.Address.IsValid() {
		switch {
		case !u.Gateway.IsValid() && p.set("uplink_gateway"):
			// Its own problem is reported already.
		case !u.Gateway.IsValid():
			p.problem(p.lineOf("uplink_address"), "uplink_gateway", "missing; with a static address the Pi needs the router's address to reach the Internet",
				"add uplink_gateway = <your router's address>, e.g. uplink_gateway = 192.168.1.1")
		case u.Gateway.Is4() != u.Address.Addr().Is4() || (!u.Address.Contains(u.Gateway) && !u.Gateway.IsLinkLocalUnicast()):
			p.problem(p.lineOf("uplink_gateway"), "uplink_gateway", fmt.Sprintf("%s is not inside %s", u.Gateway, u.Address.Masked()),
				"check both: the gateway must be in the same network as uplink_address")
		case u.Gateway == u.Address.Addr():
			p.problem(p.lineOf("uplink_gateway"), "uplink_gateway", "is the Pi's own address", "write your router's address")
		}
	}
}

// set reports whether the file sets key, rightly or wrongly: a setting
// with a bad value is reported once, not again as missing.
func (p *parser) set(key string) bool {
	_, ok := p.seen[key]
	return ok
}

// lineOf returns the line of the first of keys that was set, for problems
// about a missing partner setting.
func (p *parser) lineOf(keys ...string) int {
	for _, k := range keys {
		if n, ok := p.seen[k]; ok {
			return n
		}
	}
	return 0
}

func checkName(v string) error {
	if len(v) > 63 {
		return fmt.Errorf("%d bytes long, more than 63", len(v))
	}
	for _, r := range v {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune(" -_.'", r) {
			return fmt.Errorf("%q has the character %q", clip(v), r)
		}
	}
	return nil
}

func checkHostPort(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return errors.New("not host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not 1 to 65535", port)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !hostnameRE.MatchString(host) {
		return fmt.Errorf("%q is neither an IP address nor a DNS name", host)
	}
	return nil
}

func checkTimeZone(v string) error {
	if !timeZoneRE.MatchString(v) || v == "Local" {
		return fmt.Errorf("%q is not a time zone name", clip(v))
	}
	if _, err := time.LoadLocation(v); err != nil {
		return fmt.Errorf("%q is not in the tz database (check the spelling and the capitals)", clip(v))
	}
	return nil
}

// examplePrefix suggests the first host address of a network.
func examplePrefix(p netip.Prefix) string {
	return netip.PrefixFrom(p.Masked().Addr().Next(), p.Bits()).String()
}

// clip shortens a quoted value in a message; the whole line is in the file.
func clip(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// closest returns the known key nearest to k if it is a likely typo.
func closest(k string) string {
	best, bestD := "", 3
	for _, c := range keys {
		if d := distance(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the edit distance, bounded in cost by the key lengths (keys
// are short; long input is clipped first).
func distance(a, b string) int {
	if len(a) > 40 {
		a = a[:40]
	}
	return config.EditDistance(a, b)
}
