package trunkconfig

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	good := Config{Name: "sipgate", Registrar: "sip.example:5060", User: "4930123", Password: "pw", Lines: []int{1}, Prefix: "0"}
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"good", func(*Config) {}, ""},
		{"no name", func(c *Config) { c.Name = "" }, "name: want 1 to 32"},
		{"bad registrar", func(c *Config) { c.Registrar = "sip:x@y" }, "without sip:"},
		{"bad port", func(c *Config) { c.Registrar = "h:99999" }, "port 1-65535"},
		{"no password", func(c *Config) { c.Password = "" }, "copy the account's SIP password"},
		{"no lines", func(c *Config) { c.Lines = nil }, "at least one line"},
		{"missing line", func(c *Config) { c.Lines = []int{3} }, "line 3 is not one of this node's lines [1 2]"},
		{"line twice", func(c *Config) { c.Lines = []int{1, 1} }, "line 1 is listed twice"},
		{"bad prefix", func(c *Config) { c.Prefix = "0a" }, "prefix"},
		{"short expires", func(c *Config) { c.Expires = 10 }, "expires 10"},
		{"user with @", func(c *Config) { c.User = "a@b" }, "user"},
		{"accept_from", func(c *Config) { c.AcceptFrom = []string{"217.10.79.0/24", "192.0.2.1"} }, ""},
		{"bad accept_from", func(c *Config) { c.AcceptFrom = []string{"sip.example"} }, `accept_from "sip.example": want an IP address or a prefix`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			err := c.Validate([]int{1, 2})
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
	other := good
	other.Name = "pbx"
	other.Prefix = "00"
	if err := ValidateAll([]Config{good, other}, []int{1, 2}); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("ValidateAll(overlapping prefixes) = %v", err)
	}
	other.Prefix = "9"
	if err := ValidateAll([]Config{good, other}, []int{1, 2}); err != nil {
		t.Errorf("ValidateAll = %v", err)
	}
	if err := ValidateAll([]Config{good, good}, []int{1, 2}); err == nil || !strings.Contains(err.Error(), "used twice") {
		t.Errorf("ValidateAll(same name) = %v", err)
	}
	for _, tt := range []struct {
		prefix, dialled, number string
		ok                      bool
	}{{"0", "0301234", "301234", true}, {"0", "301234", "", false}, {"0", "0", "", false}, {"", "301234", "301234", true}} {
		c := good
		c.Prefix = tt.prefix
		n, ok := c.Number(tt.dialled)
		if n != tt.number || ok != tt.ok {
			t.Errorf("prefix %q: Number(%q) = %q, %v, want %q, %v", tt.prefix, tt.dialled, n, ok, tt.number, tt.ok)
		}
	}
}
