package config

import (
	"strings"
	"testing"
)

const goodConfig = `{
  "name": "bob",
  "phone_port": "eth0",
  "lines": [1, 2],
  "peers": [
    {"index": 7, "name": "alice", "public_key": "Y9//y9jiDSs1pIpWEtgYbJYWCjgZwXRRhhcrL4bDhzc=", "endpoint": "198.51.100.1:51824"}
  ]
}`

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(goodConfig))
	if err != nil {
		t.Fatalf("Parse(good) = %v", err)
	}
	checks := []struct {
		name, got, want string
	}{
		{"prefix", c.Prefix, "pl"},
		{"state_dir", c.StateDir, "/var/lib/pl"},
		{"run_dir", c.RunDir, "/run/pl"},
		{"private_key_file", c.PrivateKeyFile, "/var/lib/pl/node.key"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.name, ch.got, ch.want)
		}
	}
	if c.ListenPort != 51820 {
		t.Errorf("listen_port = %d, want 51820", c.ListenPort)
	}
	if c.MTU != 1420 {
		t.Errorf("mtu = %d, want 1420", c.MTU)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		wantErr string
	}{
		{"unknown key is a typo", func(s string) string { return strings.Replace(s, `"lines"`, `"line"`, 1) }, `unknown field "line"`},
		{"syntax error names the line", func(s string) string { return strings.Replace(s, `"eth0",`, `"eth0"`, 1) }, "line 4"},
		{"index out of range", func(s string) string { return strings.Replace(s, `"index": 7`, `"index": 254`, 1) }, "index 254"},
		{"bad key", func(s string) string { return strings.Replace(s, `Y9//`, `Y9/`, 1) }, "is not base64"},
		{"missing key", func(s string) string {
			return strings.Replace(s, `"public_key": "Y9//y9jiDSs1pIpWEtgYbJYWCjgZwXRRhhcrL4bDhzc=", `, ``, 1)
		}, "public_key is missing"},
		{"endpoint without port", func(s string) string { return strings.Replace(s, `:51824`, ``, 1) }, "want IP:port"},
		{"line zero", func(s string) string { return strings.Replace(s, `[1, 2]`, `[0]`, 1) }, "0 is not a line"},
		{"line twice", func(s string) string { return strings.Replace(s, `[1, 2]`, `[2, 2]`, 1) }, "listed twice"},
		{"prefix with dash", func(s string) string {
			return strings.Replace(s, `"name": "bob",`, `"name": "bob", "prefix": "p-l",`, 1)
		}, "prefix"},
		{"prefix ending in digit", func(s string) string {
			return strings.Replace(s, `"name": "bob",`, `"name": "bob", "prefix": "pl1",`, 1)
		}, "ending with a letter"},
		{"relative state dir", func(s string) string {
			return strings.Replace(s, `"name": "bob",`, `"name": "bob", "state_dir": "var",`, 1)
		}, "absolute"},
		{"no phone port", func(s string) string { return strings.Replace(s, `"eth0"`, `""`, 1) }, "phone_port"},
		{"trailing garbage", func(s string) string { return s + "{}" }, "extra data"},
		{"wrong type", func(s string) string { return strings.Replace(s, `[1, 2]`, `"1"`, 1) }, `"lines" must be`},
		{"peer line out of range", func(s string) string {
			return strings.Replace(s, `"endpoint"`, `"lines": [255], "endpoint"`, 1)
		}, "(alice): lines: 255"},
		{"time zone with spaces", func(s string) string {
			return strings.Replace(s, `"name": "bob",`, `"name": "bob", "phones": {"time_zone": "Central Europe"},`, 1)
		}, "IANA zone"},
		{"rendezvous without port", func(s string) string {
			return strings.Replace(s, `"name": "bob",`, `"name": "bob", "rendezvous": [{"address": "rv.example.org", "key": "z0N+zdnGxDshMomphWwDcR+XpM8r/8jYk+CBxPOcpaY="}],`, 1)
		}, "want host:port"},
		{"rendezvous bad host", func(s string) string {
			return strings.Replace(s, `"name": "bob",`, `"name": "bob", "rendezvous": [{"address": "rv_example:3478", "key": "z0N+zdnGxDshMomphWwDcR+XpM8r/8jYk+CBxPOcpaY="}],`, 1)
		}, "neither an IP"},
		{"rendezvous without key", func(s string) string {
			return strings.Replace(s, `"name": "bob",`, `"name": "bob", "rendezvous": [{"address": "rv.example.org:3478"}],`, 1)
		}, "rendezvousd -public-key"},
		{"peer without endpoint or rendezvous", func(s string) string {
			return strings.Replace(s, `, "endpoint": "198.51.100.1:51824"`, ``, 1)
		}, "no endpoint and no rendezvous"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.edit(goodConfig)))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDuplicatePeers(t *testing.T) {
	two := strings.Replace(goodConfig, `"peers": [`, `"peers": [
    {"index": 7, "public_key": "EI1mjysvXOTKAgD4781cIY3O/LalPFV0ORgUlmfF+1Y=", "endpoint": "198.51.100.3:51820"},`, 1)
	if _, err := Parse([]byte(two)); err == nil || !strings.Contains(err.Error(), "index 7 is used") {
		t.Errorf("duplicate index: err = %v", err)
	}
	sameKey := strings.Replace(goodConfig, `"peers": [`, `"peers": [
    {"index": 8, "public_key": "Y9//y9jiDSs1pIpWEtgYbJYWCjgZwXRRhhcrL4bDhzc=", "endpoint": "198.51.100.3:51820"},`, 1)
	if _, err := Parse([]byte(sameKey)); err == nil || !strings.Contains(err.Error(), "paired twice") {
		t.Errorf("duplicate key: err = %v", err)
	}
}

func TestNames(t *testing.T) {
	n := Names{Prefix: "pl"}
	if got := n.Namespace(7); got != "pl-7" {
		t.Errorf("Namespace(7) = %s", got)
	}
	if got := n.Veth(7); got != "plv7" {
		t.Errorf("Veth(7) = %s", got)
	}
	if got := n.Device(253); got != "pl253" {
		t.Errorf("Device(253) = %s", got)
	}
	tests := []struct {
		name  string
		parse func(string) (int, bool)
		in    string
		want  int
		ok    bool
	}{
		{"namespace", n.ParseNamespace, "pl-7", 7, true},
		{"namespace of longer prefix", n.ParseNamespace, "plab-7", 0, false},
		{"namespace leading zero", n.ParseNamespace, "pl-07", 0, false},
		{"namespace plus sign", n.ParseNamespace, "pl-+7", 0, false},
		{"namespace out of range", n.ParseNamespace, "pl-254", 0, false},
		{"veth", n.ParseVeth, "plv12", 12, true},
		{"veth of prefix plv", n.ParseVeth, "plv-1", 0, false},
		{"device", n.ParseDevice, "pl12", 12, true},
		{"device of longer prefix", n.ParseDevice, "plab12", 0, false},
		{"bare prefix", n.ParseDevice, "pl", 0, false},
	}
	for _, tt := range tests {
		got, ok := tt.parse(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: parse(%q) = %d, %v; want %d, %v", tt.name, tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzConfig feeds arbitrary bytes to the parser: it must never panic, and
// whatever it accepts must validate again unchanged (defaults are stable).
func FuzzConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"phone_port":"eth0","lines":[1],"peers":[{"index":1,"public_key":"Y9//y9jiDSs1pIpWEtgYbJYWCjgZwXRRhhcrL4bDhzc=","endpoint":"[::1]:1"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		before := *c
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config fails validation again: %v", err)
		}
		if before.Prefix != c.Prefix || before.StateDir != c.StateDir || before.ListenPort != c.ListenPort {
			t.Fatalf("second Validate changed defaults")
		}
	})
}

// phones.internet is off unless the file says so: phones reach the uplink
// only when the owner chose it (docs/firewall.md).
func TestPhonesInternet(t *testing.T) {
	c, err := Parse([]byte(goodConfig))
	if err != nil || c.Phones.Internet {
		t.Fatalf("Parse(good) = internet %v, %v; want off by default", c != nil && c.Phones.Internet, err)
	}
	on := strings.Replace(goodConfig, `"name": "bob",`, `"name": "bob", "phones": {"internet": true},`, 1)
	if c, err := Parse([]byte(on)); err != nil || !c.Phones.Internet {
		t.Errorf("Parse with phones.internet true = %v, %v; want it on", c, err)
	}
	if _, err := Parse([]byte(strings.Replace(on, "true", `"yes"`, 1))); err == nil {
		t.Error(`Parse with phones.internet "yes" succeeded; want a type error`)
	}
}
