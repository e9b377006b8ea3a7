package provision

import (
	"errors"
	"strings"
	"testing"
)

// sipDir is exampleDir with the Pi's SIP service on: every line has an
// account.
func sipDir() Directory {
	d := exampleDir()
	d.Password = func(s int) (string, error) { return "pw-line-" + strings.Repeat("x", s), nil }
	return d
}

func TestGoldenAccount(t *testing.T) {
	dir := sipDir()
	for _, tt := range []struct {
		file string
		gen  func() ([]byte, error)
	}{
		{"grandstream-sip-cfg000b82123456.xml", func() ([]byte, error) { return Config(Grandstream, dir, 1, gsMAC) }},
		{"yealink-sip-805ec0123456.cfg", func() ([]byte, error) { return Config(Yealink, dir, 2, ylMAC) }},
		{"grandstream-sip-phonebook-line1.xml", func() ([]byte, error) { return Phonebook(Grandstream, dir, 1) }},
		{"yealink-sip-phonebook-line2.xml", func() ([]byte, error) { return Phonebook(Yealink, dir, 2) }},
	} {
		t.Run(tt.file, func(t *testing.T) {
			got, err := tt.gen()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.file, got)
		})
	}
}

func TestGrandstreamAccount(t *testing.T) {
	b, err := Config(Grandstream, sipDir(), 2, gsMAC)
	if err != nil {
		t.Fatal(err)
	}
	_, p := parseGrandstream(t, b)
	for k, v := range map[string]string{
		"P271": "1", "P31": "1", "P32": "60", // registered, every hour at most
		"P47": "10.0.2.2", "P48": "", // the Pi's side of line 2; no outbound proxy
		"P35": "2", "P36": "2", "P34": "pw-line-xx",
		"P3":    "alice line 2",
		"P2347": "0", "P258": "0", // direct IP calls still ring it
		"P1310": "0",
		"P290":  "{ x+ | x+*x+ | x+* | *x+ | *xx*x+ }",
	} {
		if p[k] != v {
			t.Errorf("%s = %q, want %q", k, p[k], v)
		}
	}
}

func TestYealinkAccount(t *testing.T) {
	b, err := Config(Yealink, sipDir(), 1, ylMAC)
	if err != nil {
		t.Fatal(err)
	}
	keys := parseYealink(t, b)
	for k, v := range map[string]string{
		"account.1.enable":               "1",
		"account.1.user_name":            "1",
		"account.1.auth_name":            "1",
		"account.1.password":             "pw-line-x",
		"account.1.sip_server.1.address": "10.0.1.2",
		"account.1.sip_server.1.port":    "5060",
		"account.1.sip_server_host":      "10.0.1.2",
		"account.1.sip_server_port":      "5060",
		"sip.trust_ctrl":                 "0", // direct IP calls still ring it
		"account.1.sip_trust_ctrl":       "0",
		"features.direct_ip_call_enable": "1",
	} {
		if keys[k] != v {
			t.Errorf("%s = %q, want %q", k, keys[k], v)
		}
	}
}

func TestPhonebookDial(t *testing.T) {
	b, err := Phonebook(Yealink, sipDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<Telephone>10.7.2.1</Telephone>\n<Telephone>bob.2</Telephone>", "<Telephone>carol.1</Telephone>"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("phonebook lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "alice.") {
		t.Errorf("a local line got a name to dial:\n%s", b)
	}
	// Without the SIP service, the address alone.
	b, _ = Phonebook(Yealink, exampleDir(), 1)
	if strings.Contains(string(b), "bob.2") {
		t.Errorf("phonebook without SIP lists names:\n%s", b)
	}
}

func TestAccountPasswordErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		pw   func(int) (string, error)
	}{
		{"store fails", func(int) (string, error) { return "", errors.New("disk full") }},
		{"empty", func(int) (string, error) { return "", nil }},
		{"newline", func(int) (string, error) { return "a\nsip.trust_ctrl = 1", nil }},
		{"markup", func(int) (string, error) { return "a<b", nil }},
	} {
		d := exampleDir()
		d.Password = tt.pw
		for _, v := range []Vendor{Grandstream, Yealink} {
			if b, err := Config(v, d, 1, gsMAC); err == nil {
				t.Errorf("%s, %v: no error, file:\n%s", tt.name, v, b)
			}
		}
	}
}
