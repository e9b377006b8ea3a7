package provision

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// exampleDir is the golden example node: alice with lines 1 and 2, paired
// with bob (index 7, lines 1 and 2) and carol (index 9, line 1 by default).
func exampleDir() Directory {
	return Directory{
		NodeName: "alice",
		TimeZone: "Europe/Berlin",
		Lines:    []Line{{Line: 1}, {Line: 2}},
		Peers: []Peer{
			{Index: 7, Name: "bob", Lines: []int{1, 2}},
			{Index: 9, Name: "carol"},
		},
	}
}

var (
	gsMAC = mustMAC("00:0b:82:12:34:56")
	ylMAC = mustMAC("80:5e:c0:12:34:56")
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the generated file (run go test -update after checking the change):\n%s", path, got)
	}
}

func TestGolden(t *testing.T) {
	dir := exampleDir()
	tests := []struct {
		file string
		gen  func() ([]byte, error)
	}{
		{"grandstream-cfg000b82123456.xml", func() ([]byte, error) { return Config(Grandstream, dir, 1, gsMAC) }},
		{"yealink-805ec0123456.cfg", func() ([]byte, error) { return Config(Yealink, dir, 2, ylMAC) }},
		{"grandstream-phonebook-line1.xml", func() ([]byte, error) { return Phonebook(Grandstream, dir, 1) }},
		{"yealink-phonebook-line2.xml", func() ([]byte, error) { return Phonebook(Yealink, dir, 2) }},
		{"yealink-common.cfg", YealinkCommon},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := tt.gen()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.file, got)
		})
	}
}

// gsFile is the Grandstream XML as the phone reads it.
type gsFile struct {
	XMLName xml.Name `xml:"gs_provision"`
	Version string   `xml:"version,attr"`
	MAC     string   `xml:"mac"`
	Config  struct {
		Items []struct {
			XMLName xml.Name
			Value   string `xml:",chardata"`
		} `xml:",any"`
	} `xml:"config"`
}

func parseGrandstream(t *testing.T, b []byte) (mac string, p map[string]string) {
	t.Helper()
	var f gsFile
	if err := xml.Unmarshal(b, &f); err != nil {
		t.Fatalf("Grandstream config is not XML: %v\n%s", err, b)
	}
	p = map[string]string{}
	for _, it := range f.Config.Items {
		if _, dup := p[it.XMLName.Local]; dup {
			t.Errorf("P-value %s appears twice", it.XMLName.Local)
		}
		p[it.XMLName.Local] = it.Value
	}
	return f.MAC, p
}

func TestGrandstreamConfig(t *testing.T) {
	b, err := Config(Grandstream, exampleDir(), 2, gsMAC)
	if err != nil {
		t.Fatal(err)
	}
	mac, p := parseGrandstream(t, b)
	if mac != "000b82123456" {
		t.Errorf("<mac> = %q, want 000b82123456", mac)
	}
	want := map[string]string{
		"P271": "1", "P47": "", "P31": "0", // account on, no server, no registration
		"P3": "alice line 2", "P270": "line 2", "P35": "2",
		"P130":  "0",              // UDP: SIP over TCP is refused (pkg/firewall)
		"P2347": "0", "P258": "0", // calls from anyone, any user part
		"P2302": "1", "P2301": "0", "P2303": "0", "P79": "101", // RFC 2833, PT 101
		"P57": "9", "P58": "0", "P59": "8", // G.722, PCMU, PCMA
		"P60": "8", "P61": "8", "P62": "8", "P46": "8", // the rest repeat PCMA
		"P1310": "0", "P6758": "1", // direct IP calls allowed, dial plan bypassed
		"P30": "10.0.2.2", "P64": "customize", "P246": "CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00",
		"P212": "1", "P237": "10.0.2.2", "P145": "1",
		"P330": "1", "P331": "10.0.2.2/phonebook/grandstream",
	}
	for k, v := range want {
		got, ok := p[k]
		if !ok {
			t.Errorf("%s missing", k)
		} else if got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// parseYealink checks the header and returns the keys; duplicates fail.
func parseYealink(t *testing.T, b []byte) map[string]string {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(b))
	if !sc.Scan() || sc.Text() != "#!version:1.0.0.1" {
		t.Fatalf("first line = %q, want #!version:1.0.0.1", sc.Text())
	}
	keys := map[string]string{}
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, " = ")
		if !ok {
			t.Errorf("line %q is not key = value", line)
			continue
		}
		if _, dup := keys[k]; dup {
			t.Errorf("key %s appears twice", k)
		}
		keys[k] = v
	}
	return keys
}

func TestYealinkConfig(t *testing.T) {
	b, err := Config(Yealink, exampleDir(), 1, ylMAC)
	if err != nil {
		t.Fatal(err)
	}
	keys := parseYealink(t, b)
	want := map[string]string{
		"account.1.enable":                      "1",
		"account.1.display_name":                "alice line 1",
		"account.1.sip_server.1.address":        "%NULL%",
		"account.1.sip_server.1.transport_type": "0", // SIP over UDP: TCP is refused (pkg/firewall)
		"account.1.transport":                   "0",
		"features.direct_ip_call_enable":        "1",
		"sip.trust_ctrl":                        "0",
		"account.1.dtmf.type":                   "1",
		"account.1.dtmf.dtmf_payload":           "101",
		"account.1.codec.g722.priority":         "1",
		"account.1.codec.pcmu.priority":         "2",
		"account.1.codec.pcma.priority":         "3",
		"account.1.codec.g729.enable":           "0",
		"local_time.ntp_server1":                "10.0.1.2",
		"local_time.time_zone":                  "+1",
		"local_time.summer_time":                "1",
		"local_time.start_time":                 "3/5/7/2",
		"local_time.end_time":                   "10/5/7/3",
		"remote_phonebook.data.1.url":           "http://10.0.1.2/phonebook/yealink.xml",
		"features.remote_phonebook.flash_time":  "3600", // the documented minimum
		"account.1.codec.5.payload_type":        "G729",
		"account.1.codec.5.enable":              "0",
		"auto_provision.server.url":             "http://10.0.1.2/",
		"static.auto_provision.server.url":      "http://10.0.1.2/",
	}
	for k, v := range want {
		got, ok := keys[k]
		if !ok {
			t.Errorf("%s missing", k)
		} else if got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestHostileNames(t *testing.T) {
	evil := "Al\"ice <&> 'x'\nsip.trust_ctrl = 1\r\n]]></P3><P2347>1</P2347>"
	dir := exampleDir()
	dir.NodeName = evil
	dir.Lines[1].Label = "kitchen\n#!version"
	dir.Peers[0].Name = "<bob & co>\x00\n"

	b, err := Config(Grandstream, dir, 1, gsMAC)
	if err != nil {
		t.Fatal(err)
	}
	_, p := parseGrandstream(t, b)
	if p["P2347"] != "0" {
		t.Errorf("P2347 = %q: a name changed a setting", p["P2347"])
	}
	if !strings.HasSuffix(p["P3"], " line 1") || !strings.HasPrefix(p["P3"], `Al"ice <&> 'x' sip.trust_ctrl = 1 ]]>`) || len([]rune(p["P3"])) > maxName {
		t.Errorf("P3 = %q, want the cleaned name, shortened, then \" line 1\"", p["P3"])
	}

	b, err = Config(Yealink, dir, 1, ylMAC)
	if err != nil {
		t.Fatal(err)
	}
	keys := parseYealink(t, b)
	if keys["sip.trust_ctrl"] != "0" {
		t.Errorf("sip.trust_ctrl = %q: a name changed a setting", keys["sip.trust_ctrl"])
	}

	for _, v := range []Vendor{Grandstream, Yealink} {
		b, err := Phonebook(v, dir, 1)
		if err != nil {
			t.Fatal(err)
		}
		names := phonebookNames(t, b)
		if len(names) != 4 || names[0] != "<bob & co> - line 1" || names[1] != "<bob & co> - line 2" ||
			!strings.HasPrefix(names[2], `Al"ice <&>`) || !strings.HasSuffix(names[2], " - kitchen #!version") ||
			names[3] != "carol - line 1" {
			t.Errorf("%v phonebook names = %q", v, names)
		}
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice", "alice"},
		{"  a\n\tb  ", "a b"},
		{"\x00\x7f", ""},
		{"bad\xffutf8", "badutf8"},
		{"Zoë — Küche", "Zoë — Küche"},
		{strings.Repeat("x", 100), strings.Repeat("x", maxName)},
	}
	for _, tt := range tests {
		if got := cleanName(tt.in); got != tt.want {
			t.Errorf("cleanName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// phonebookNames reads entry names and checks each entry's address is there.
func phonebookNames(t *testing.T, b []byte) []string {
	t.Helper()
	var gs struct {
		XMLName  xml.Name `xml:"AddressBook"`
		Contacts []struct {
			LastName string `xml:"LastName"`
			Number   string `xml:"Phone>phonenumber"`
			Account  string `xml:"Phone>accountindex"`
		} `xml:"Contact"`
	}
	var yl struct {
		XMLName xml.Name `xml:"YealinkIPPhoneDirectory"`
		Entries []struct {
			Name string `xml:"Name"`
			Tel  string `xml:"Telephone"`
		} `xml:"DirectoryEntry"`
	}
	var names []string
	if err := xml.Unmarshal(b, &gs); err == nil {
		for _, c := range gs.Contacts {
			if c.Number == "" || c.Account != "1" {
				t.Errorf("contact %q: number %q account %q", c.LastName, c.Number, c.Account)
			}
			names = append(names, c.LastName)
		}
		return names
	}
	if err := xml.Unmarshal(b, &yl); err != nil {
		t.Fatalf("phonebook is neither format: %v\n%s", err, b)
	}
	for _, e := range yl.Entries {
		if e.Tel == "" {
			t.Errorf("entry %q has no number", e.Name)
		}
		names = append(names, e.Name)
	}
	return names
}

func TestPhonebookEntries(t *testing.T) {
	tests := []struct {
		name string
		line int
		want []string // "name=addr"
	}{
		{"line 1 sees line 2", 1, []string{"alice - line 2=10.0.2.1", "bob - line 1=10.7.1.1", "bob - line 2=10.7.2.1", "carol - line 1=10.9.1.1"}},
		{"line 2 sees line 1", 2, []string{"alice - line 1=10.0.1.1", "bob - line 1=10.7.1.1", "bob - line 2=10.7.2.1", "carol - line 1=10.9.1.1"}},
		{"a line not in the list sees both", 3, []string{"alice - line 1=10.0.1.1", "alice - line 2=10.0.2.1", "bob - line 1=10.7.1.1", "bob - line 2=10.7.2.1", "carol - line 1=10.9.1.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es, err := phonebookEntries(exampleDir(), tt.line)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Name+"="+e.Addr.String())
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("phonebookEntries(line %d) = %q, want %q", tt.line, got, tt.want)
			}
		})
	}
}

func TestInvalid(t *testing.T) {
	bad := func(f func(*Directory)) Directory { d := exampleDir(); f(&d); return d }
	tests := []struct {
		name string
		dir  Directory
		line int
		mac  net.HardwareAddr
	}{
		{"line 0", exampleDir(), 0, gsMAC},
		{"line 255", exampleDir(), 255, gsMAC},
		{"short MAC", exampleDir(), 1, gsMAC[:3]},
		{"no node name", bad(func(d *Directory) { d.NodeName = "\n" }), 1, gsMAC},
		{"peer index 0", bad(func(d *Directory) { d.Peers[0].Index = 0 }), 1, gsMAC},
		{"peer index 254", bad(func(d *Directory) { d.Peers[0].Index = 254 }), 1, gsMAC},
		{"peer line 0", bad(func(d *Directory) { d.Peers[0].Lines = []int{0} }), 1, gsMAC},
		{"unknown zone", bad(func(d *Directory) { d.TimeZone = "Mars/Olympus" }), 1, gsMAC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errC := Config(Grandstream, tt.dir, tt.line, tt.mac)
			_, errY := Config(Yealink, tt.dir, tt.line, tt.mac)
			_, errP := Phonebook(Yealink, tt.dir, tt.line)
			// A config does not depend on the peers; a phonebook does not
			// depend on node name, zone or MAC.
			phonebookErr := strings.HasPrefix(tt.name, "line") || strings.HasPrefix(tt.name, "peer")
			configErr := !strings.HasPrefix(tt.name, "peer")
			for what, err := range map[string]error{"Grandstream config": errC, "Yealink config": errY} {
				if configErr != errors.Is(err, ErrInvalid) {
					t.Errorf("%s: err = %v, want ErrInvalid: %v", what, err, configErr)
				}
			}
			if phonebookErr != errors.Is(errP, ErrInvalid) {
				t.Errorf("Phonebook: err = %v, want ErrInvalid: %v", errP, phonebookErr)
			}
		})
	}
	if _, err := Config(Vendor(99), exampleDir(), 1, gsMAC); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown vendor: err = %v, want ErrInvalid", err)
	}
}

// TestURL: option 66 ends without a slash (issue 19 item 4).
func TestURL(t *testing.T) {
	for line, want := range map[int]string{1: "http://10.0.1.2", 2: "http://10.0.2.2", 254: "http://10.0.254.2"} {
		if got := URL(line); got != want {
			t.Errorf("URL(%d) = %q, want %q", line, got, want)
		}
	}
}

// TestOfferedCodecs checks, for every codec key a phone reads, that the
// phones offer exactly G.722, PCMU, PCMA in that order, as docs/phones.md
// says (issue 19 item 6): no vocoder choice or codec slot is left at a
// factory value that would add G.729, G.726 or a second G.722.
func TestOfferedCodecs(t *testing.T) {
	want := []string{"G722", "PCMU", "PCMA"}

	b, err := Config(Grandstream, exampleDir(), 1, gsMAC)
	if err != nil {
		t.Fatal(err)
	}
	_, p := parseGrandstream(t, b)
	gsName := map[string]string{"0": "PCMU", "2": "G726-32", "4": "G723", "8": "PCMA", "9": "G722", "18": "G729", "98": "iLBC"}
	var gs []string
	seen := map[string]bool{}
	for _, k := range []string{"P57", "P58", "P59", "P60", "P61", "P62", "P46"} { // choices 1-7
		v, ok := p[k]
		if !ok {
			t.Errorf("Grandstream vocoder choice %s left at its factory value", k)
			continue
		}
		name, ok := gsName[v]
		if !ok {
			t.Errorf("Grandstream %s = %q is not a vocoder", k, v)
		}
		if !seen[name] {
			seen[name] = true
			gs = append(gs, name)
		}
	}
	if strings.Join(gs, ",") != strings.Join(want, ",") {
		t.Errorf("Grandstream offers %v, want %v", gs, want)
	}

	b, err = Config(Yealink, exampleDir(), 1, ylMAC)
	if err != nil {
		t.Fatal(err)
	}
	keys := parseYealink(t, b)
	// V7x slots (T19P, firmware 31.x): the 13 slots, each with its factory
	// codec, all written.
	slots := []string{"PCMU", "PCMA", "G723_53", "G723_63", "G729", "G722", "iLBC", "G726-16", "G726-24", "G726-32", "G726-40", "iLBC_13_3", "iLBC_15_2"}
	byPrio := map[string]string{}
	for i, codec := range slots {
		k := fmt.Sprintf("account.1.codec.%d.", i+1)
		if got := keys[k+"payload_type"]; got != codec {
			t.Errorf("%spayload_type = %q, want the slot's factory codec %s", k, got, codec)
		}
		switch keys[k+"enable"] {
		case "1":
			prio := keys[k+"priority"]
			if byPrio[prio] != "" {
				t.Errorf("%s and %s share priority %q", byPrio[prio], codec, prio)
			}
			byPrio[prio] = codec
		case "0":
		default:
			t.Errorf("%senable = %q, want 0 or 1 (a missing key keeps the factory value)", k, keys[k+"enable"])
		}
	}
	if n := strings.Count(string(b), "account.1.codec.14."); n != 0 {
		t.Errorf("a 14th codec slot is written")
	}
	v7x := []string{byPrio["1"], byPrio["2"], byPrio["3"]}
	if len(byPrio) != 3 || strings.Join(v7x, ",") != strings.Join(want, ",") {
		t.Errorf("Yealink V7x slots offer %v (by priority: %v), want %v", v7x, byPrio, want)
	}
	// V80+ named codecs (T19P E2): exactly g722, pcmu, pcma on, in that order.
	var on []string
	for k, v := range keys {
		if name, ok := strings.CutPrefix(k, "account.1.codec."); ok && strings.HasSuffix(name, ".enable") && v == "1" {
			name = strings.TrimSuffix(name, ".enable")
			if name[0] >= 'a' && name[0] <= 'z' {
				on = append(on, name)
			}
		}
	}
	slices.SortFunc(on, func(a, b string) int {
		return strings.Compare(keys["account.1.codec."+a+".priority"], keys["account.1.codec."+b+".priority"])
	})
	if strings.Join(on, ",") != "g722,pcmu,pcma" {
		t.Errorf("Yealink V80 codecs on, by priority: %v, want g722,pcmu,pcma", on)
	}
	for _, c := range []string{"g729", "g726_16", "g726_24", "g726_32", "g726_40", "g723_53", "g723_63", "opus", "ilbc"} {
		if keys["account.1.codec."+c+".enable"] != "0" {
			t.Errorf("account.1.codec.%s.enable = %q, want 0", c, keys["account.1.codec."+c+".enable"])
		}
	}
}

// A peer's line shows the label the peer gave it, cleaned like every name
// a peer chooses; the number to dial stays the address.
func TestPhonebookPeerLabels(t *testing.T) {
	d := exampleDir()
	d.Peers[0].LineLabels = map[int]string{2: "  Front\n Door ", 5: "not a line of bob's list"}
	d.Peers[1].LineLabels = map[int]string{1: "\x00\x01"} // nothing printable: "line 1"
	es, err := phonebookEntries(d, 1)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Name+"="+e.Addr.String())
	}
	want := []string{"alice - line 2=10.0.2.1", "bob - Front Door=10.7.2.1", "bob - line 1=10.7.1.1", "carol - line 1=10.9.1.1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("entries %q, want %q", got, want)
	}
	b, err := Phonebook(Grandstream, d, 1)
	if err != nil || !strings.Contains(string(b), "<LastName>bob - Front Door</LastName>") {
		t.Errorf("Grandstream phonebook (%v):\n%s", err, b)
	}
}
