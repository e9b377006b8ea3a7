package provision

import (
	"regexp"
	"strings"
	"testing"
)

var pathTests = []struct {
	path   string
	kind   kind
	vendor Vendor
	mac    string
}{
	{"/cfg000b82123456.xml", kindConfig, Grandstream, "00:0b:82:12:34:56"},
	{"/cfg000B82ABCDEF.xml", kindConfig, Grandstream, "00:0b:82:ab:cd:ef"},
	{"/CFG000b82123456.XML", kindConfig, Grandstream, "00:0b:82:12:34:56"},
	{"//cfg000b82123456.xml", kindConfig, Grandstream, "00:0b:82:12:34:56"},
	{"///cfg000b82123456.xml", kindConfig, Grandstream, "00:0b:82:12:34:56"},
	{"//CFG000B82ABCDEF.XML", kindConfig, Grandstream, "00:0b:82:ab:cd:ef"},
	{"//805ec0123456.cfg", kindConfig, Yealink, "80:5e:c0:12:34:56"},
	{"///805EC0123456.cfg", kindConfig, Yealink, "80:5e:c0:12:34:56"},
	{"//y000000000031.cfg", kindCommon, Yealink, ""},
	{"//phonebook/yealink.xml", kindPhonebook, Yealink, ""},
	{"///phonebook/grandstream/phonebook.xml", kindPhonebook, Grandstream, ""},
	// Grandstream's legacy binary name: never XML.
	{"/cfg000b82123456", kindNotServed, Grandstream, ""},
	{"/CFG000B82ABCDEF", kindNotServed, Grandstream, ""},
	{"//cfg00:0b:82:12:34:56", kindNotServed, Grandstream, ""},
	{"/cfg00:0b:82:12:34:56.xml", kindConfig, Grandstream, "00:0b:82:12:34:56"},
	{"/805ec0123456.cfg", kindConfig, Yealink, "80:5e:c0:12:34:56"},
	{"/805EC0123456.cfg", kindConfig, Yealink, "80:5e:c0:12:34:56"},
	{"/80-5e-c0-12-34-56.cfg", kindConfig, Yealink, "80:5e:c0:12:34:56"},
	{"/y000000000031.cfg", kindCommon, Yealink, ""},
	{"/y000000000053.cfg", kindCommon, Yealink, ""},
	{"/phonebook/yealink.xml", kindPhonebook, Yealink, ""},
	{"/phonebook/grandstream.xml", kindPhonebook, Grandstream, ""},
	{"/phonebook/grandstream/phonebook.xml", kindPhonebook, Grandstream, ""},

	{"/", kindOther, 0, ""},
	{"", kindOther, 0, ""},
	{"/status", kindOther, 0, ""},
	{"/cfg.xml", kindOther, 0, ""},
	{"/cfggxp1610.xml", kindOther, 0, ""},
	{"/y000000000000.boot", kindOther, 0, ""},
	{"/cfg000b8212345.xml", kindOther, 0, ""},       // 11 digits
	{"/cfg000b821234567.xml", kindOther, 0, ""},     // 13 digits
	{"/cfg000b82g23456.xml", kindOther, 0, ""},      // not hex
	{"/cfg00:0b-82:12:34:56.xml", kindOther, 0, ""}, // mixed separators
	{"/cfg00.0b.82.12.34.56.xml", kindOther, 0, ""},
	{"/x/cfg000b82123456.xml", kindOther, 0, ""},
	{"/cfg000b82123456.xml.bak", kindOther, 0, ""},
	{"/cfg000b82123456.cfg", kindOther, 0, ""},
	{"/805ec0123456.cfg.cfg", kindOther, 0, ""},
	{"//", kindOther, 0, ""},
	{"//x/805ec0123456.cfg", kindOther, 0, ""},
	{"/cfg000b82123456.", kindOther, 0, ""},
	{"/805ec0123456.xml", kindOther, 0, ""},
	{"/" + strings.Repeat("a", maxPathLen), kindOther, 0, ""},
}

func TestParsePath(t *testing.T) {
	for _, tt := range pathTests {
		got := parsePath(tt.path)
		if got.kind != tt.kind || got.vendor != tt.vendor || macString(got) != tt.mac {
			t.Errorf("parsePath(%q) = {%v %v %q}, want {%v %v %q}", tt.path, got.kind, got.vendor, macString(got), tt.kind, tt.vendor, tt.mac)
		}
	}
}

func macString(r request) string {
	if r.mac == nil {
		return ""
	}
	return r.mac.String()
}

// perMAC is an independent statement of the accepted per-MAC forms.
var perMAC = regexp.MustCompile(`(?i)^/+(?:cfg([0-9a-f]{12}|[0-9a-f]{2}(?::[0-9a-f]{2}){5}|[0-9a-f]{2}(?:-[0-9a-f]{2}){5})\.xml|([0-9a-f]{12}|[0-9a-f]{2}(?::[0-9a-f]{2}){5}|[0-9a-f]{2}(?:-[0-9a-f]{2}){5})\.cfg)$`)

// legacyBinary is Grandstream's cfg<mac> without ".xml".
var legacyBinary = regexp.MustCompile(`(?i)^/+cfg(?:[0-9a-f]{12}|[0-9a-f]{2}(?::[0-9a-f]{2}){5}|[0-9a-f]{2}(?:-[0-9a-f]{2}){5})$`)

func FuzzParsePath(f *testing.F) {
	for _, tt := range pathTests {
		f.Add(tt.path)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r := parsePath(p)
		var m []string
		if len(p) <= maxPathLen {
			m = perMAC.FindStringSubmatch(p)
		}
		if (r.kind == kindConfig) != (m != nil) {
			t.Fatalf("parsePath(%q).kind = %v, but the accepted-forms pattern matched: %v", p, r.kind, m != nil)
		}
		if legacy := len(p) <= maxPathLen && legacyBinary.MatchString(p); (r.kind == kindNotServed) != legacy {
			t.Fatalf("parsePath(%q).kind = %v, but the legacy-name pattern matched: %v", p, r.kind, legacy)
		}
		if r.kind != kindConfig {
			if r.mac != nil {
				t.Fatalf("parsePath(%q) extracted MAC %v for kind %v", p, r.mac, r.kind)
			}
			return
		}
		digits := strings.NewReplacer(":", "", "-", "").Replace(m[1] + m[2])
		want := strings.ReplaceAll(r.mac.String(), ":", "")
		if !strings.EqualFold(digits, want) || len(r.mac) != 6 {
			t.Fatalf("parsePath(%q) MAC = %v, want the digits %s", p, r.mac, digits)
		}
	})
}
