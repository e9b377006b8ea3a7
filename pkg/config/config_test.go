package config

import (
	"os"
	"path/filepath"
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
	if c.MTU != 1184 {
		t.Errorf("mtu = %d, want 1184", c.MTU)
	}
}

// TestParseErrors shows every message Parse gives, whole: each must say
// where the problem is and what to write instead.
func TestParseErrors(t *testing.T) {
	// at inserts text after the node's name, so a case adds one key.
	at := func(text string) func(string) string {
		return func(s string) string { return strings.Replace(s, `"name": "bob",`, `"name": "bob", `+text, 1) }
	}
	repl := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				panic("test config lacks " + old)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	const rvKey = `"key": "z0N+zdnGxDshMomphWwDcR+XpM8r/8jYk+CBxPOcpaY="`
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		// The file as a whole.
		{"empty", func(string) string { return "" },
			"the file is empty; write the config as one JSON object, {...}: " + exampleHint},
		{"only blanks", func(string) string { return " \n\t\n" },
			"the file is empty; write the config as one JSON object, {...}: " + exampleHint},
		{"cut short", func(s string) string { return s[:len(s)-4] },
			"line 7, column 2: the file ends inside the JSON; is a closing } or ] missing?"},
		{"syntax error", repl(`"eth0",`, `"eth0"`),
			"line 4, column 3: invalid character '\"' after object key:value pair"},
		{"trailing garbage", func(s string) string { return s + "{}" },
			"line 8, column 2: extra data after the closing brace; the config is one JSON object"},
		{"too large", func(string) string { return strings.Repeat(" ", MaxSize+1) },
			"file is larger than 1048576 bytes; is it the right file?"},

		// Keys the config does not have.
		{"unknown key, typo", repl(`"lines"`, `"line"`),
			`line 4, column 3: line: unknown key; did you mean "lines"?`},
		{"unknown peer key, typo", repl(`"public_key"`, `"publc_key"`),
			`line 6, column 35: peers[0].publc_key (peer alice): unknown key; did you mean "public_key"?`},
		{"unknown key, far from any", at(`"colour": "blue",`),
			"line 2, column 18: colour: unknown key; the keys here are name, prefix, state_dir, run_dir, private_key_file, listen_port, mtu, phone_port, lines, peers, phones, rendezvous, line_labels, console, sip, trunks, anonymous, withhold"},
		{"unknown phones key", at(`"phones": {"dchp": true},`),
			`line 2, column 29: phones.dchp: unknown key; did you mean "dhcp"?`},

		// Values of the wrong kind or form.
		{"bad peer key", repl(`Y9//`, `Y9/`),
			"line 6, column 49: peers[0].public_key (peer alice): key \"Y9/y9jiDSs1pIpWEtgYbJYWCjgZwXRRhhcrL4bDhzc=\" is not base64 (as printed by `wg pubkey`): illegal base64 data at input byte 43; it is what `peerlined -public-key` prints on the peer"},
		{"short peer key", repl(`Y9//y9jiDSs1pIpWEtgYbJYWCjgZwXRRhhcrL4bDhzc=`, `Y9//y9jiDSs1pIpWEtgYbJYW`),
			"line 6, column 49: peers[0].public_key (peer alice): key \"Y9//y9jiDSs1pIpWEtgYbJYW\" is 18 bytes, want 32; it is what `peerlined -public-key` prints on the peer"},
		{"peer key not a string", repl(`"Y9//y9jiDSs1pIpWEtgYbJYWCjgZwXRRhhcrL4bDhzc="`, `7`),
			"line 6, column 49: peers[0].public_key (peer alice): 7 must be a string in double quotes, \"...\"; it is what `peerlined -public-key` prints on the peer"},
		{"bad rendezvous key", at(`"rendezvous": [{"address": "rv.example.org:3478", "key": "abc"}],`),
			"line 2, column 75: rendezvous[0].key (server rv.example.org:3478): key \"abc\" is not base64 (as printed by `wg pubkey`): illegal base64 data at input byte 0; it is what `rendezvousd -public-key` prints on the server"},
		{"list as a string", repl(`[1, 2]`, `"1"`),
			`line 4, column 12: lines: "1" must be a list, [...]`},
		{"fraction", repl(`[1, 2]`, `[1.5]`),
			"line 4, column 13: lines[0]: 1.5 must be a whole number"},
		{"number as a string", repl(`"index": 7`, `"index": "7"`),
			`line 6, column 15: peers[0].index (peer alice): "7" must be a whole number`},
		{"bool as a string", at(`"phones": {"dhcp": "yes"},`),
			`line 2, column 37: phones.dhcp: "yes" must be true or false`},
		{"object as a list", at(`"phones": [],`),
			"line 2, column 28: phones: must be an object, {...}, not a list"},
		{"list as an object", repl(`[1, 2]`, `{}`),
			"line 4, column 12: lines: must be a list, [...], not an object"},

		// Values the decoder takes and Validate refuses.
		{"prefix with dash", at(`"prefix": "p-l",`),
			`prefix "p-l": use 1 to 11 lower-case letters and digits, starting and ending with a letter`},
		{"prefix ending in digit", at(`"prefix": "pl1",`),
			`prefix "pl1": use 1 to 11 lower-case letters and digits, starting and ending with a letter`},
		{"relative state dir", at(`"state_dir": "var",`),
			`state_dir "var" must be an absolute path`},
		{"relative run dir", at(`"run_dir": "run",`),
			`run_dir "run" must be an absolute path`},
		{"listen port", at(`"listen_port": 70000,`),
			"listen_port 70000: use a port from 1 to 65535"},
		{"mtu", at(`"mtu": 100,`),
			"mtu 100: use 576 to 9000, or leave it out for 1184, which fits every path of at least 1280 bytes"},
		{"no phone port", repl(`"eth0"`, `""`),
			`phone_port "": name the Ethernet interface the phones are plugged into, e.g. "eth0"`},
		{"line zero", repl(`[1, 2]`, `[0]`),
			"lines: 0 is not a line number; use 1 to 254"},
		{"line twice", repl(`[1, 2]`, `[2, 2]`),
			"lines: 2 is listed twice"},
		{"index out of range", repl(`"index": 7`, `"index": 254`),
			"peers[0] (alice): index 254: use 1 to 253"},
		{"missing key", repl(`"public_key": "Y9//y9jiDSs1pIpWEtgYbJYWCjgZwXRRhhcrL4bDhzc=", `, ``),
			"peers[0] (alice): public_key is missing; ask the peer for the output of `peerlined -public-key`"},
		{"endpoint without port", repl(`:51824`, ``),
			`peers[0] (alice): endpoint "198.51.100.1": want IP:port, e.g. "198.51.100.7:51820", or leave it out to find the peer through the rendezvous servers`},
		{"peer without endpoint or rendezvous", repl(`, "endpoint": "198.51.100.1:51824"`, ``),
			"peers[0] (alice): no endpoint and no rendezvous server to find the peer through: add a rendezvous server, or the peer's fixed IP:port as endpoint"},
		{"keepalive", repl(`"endpoint"`, `"keepalive": -1, "endpoint"`),
			"peers[0] (alice): keepalive -1: use 0 (off) to 65535 seconds"},
		{"peer line out of range", repl(`"endpoint"`, `"lines": [255], "endpoint"`),
			"peers[0] (alice): lines: 255 is not a line number; use 1 to 254"},
		{"time zone with spaces", at(`"phones": {"time_zone": "Central Europe"},`),
			`phones.time_zone "Central Europe": use an IANA zone name such as "Europe/Berlin", or leave it out for UTC`},
		{"rendezvous without port", at(`"rendezvous": [{"address": "rv.example.org", ` + rvKey + `}],`),
			`rendezvous[0] address "rv.example.org": want host:port, e.g. "rv.example.org:3478"`},
		{"rendezvous port out of range", at(`"rendezvous": [{"address": "rv.example.org:0", ` + rvKey + `}],`),
			`rendezvous[0] address "rv.example.org:0": port "0": use 1 to 65535`},
		{"rendezvous bad host", at(`"rendezvous": [{"address": "rv_example:3478", ` + rvKey + `}],`),
			`rendezvous[0] address "rv_example:3478": host "rv_example" is neither an IP address nor a DNS name`},
		{"rendezvous bad second address", at(`"rendezvous": [{"address": "rv.example.org:3478", "address2": "rv.example.org", ` + rvKey + `}],`),
			`rendezvous[0] address2 "rv.example.org": want host:port, e.g. "rv.example.org:3478"`},
		{"rendezvous without key", at(`"rendezvous": [{"address": "rv.example.org:3478"}],`),
			"rendezvous[0] rv.example.org:3478: key is missing; it is what `rendezvousd -public-key` prints on the server"},
		{"sip digest unknown", at(`"sip": {"digest": "sha1"},`),
			`sip.digest "sha1": use "md5" for phones that only know MD5, or leave it out for SHA-256 and MD5`},
		{"sip rule bad regexp", at(`"sip": {"dial_plan": [{"match": "9(", "target": "line:1"}]},`),
			"sip.dial_plan: dial plan rule 1: match \"9(\" is not a regular expression: error parsing regexp: missing closing ): `^(?:9()$`"},
		{"sip rule bad target", at(`"sip": {"dial_plan": [{"match": "0", "target": "phone:1"}]},`),
			`sip.dial_plan: dial plan rule 1 (match "0"): target "phone:1": target must be "line:<n>", "peer:<name or index>[.<line>]", "trunk:<name>" or "refuse:<code>"`},
		{"sip rule bad code", at(`"sip": {"dial_plan": [{"match": "0", "target": "refuse:200"}]},`),
			`sip.dial_plan: dial plan rule 1 (match "0"): target "refuse:200": a refusal is a SIP status from 400 to 699 (404 not found, 403 forbidden, 603 decline)`},
		{"sip unknown key", at(`"sip": {"dialplan": []},`),
			`line 2, column 26: sip.dialplan: unknown key; did you mean "dial_plan"?`},
		{"trunk line not ours", at(`"trunks": [{"name": "sipgate", "registrar": "sip.example", "user": "4930", "password": "pw", "lines": [9]}],`),
			`trunk sipgate: line 9 is not one of this node's lines [1 2]`},
		{"trunk without password", at(`"trunks": [{"name": "sipgate", "registrar": "sip.example", "user": "4930", "lines": [1]}],`),
			`trunk sipgate: password: empty; copy the account's SIP password from the provider`},
		{"rule to an unknown trunk", at(`"trunks": [{"name": "sipgate", "registrar": "sip.example", "user": "4930", "password": "pw", "lines": [1], "prefix": "0"}], "sip": {"dial_plan": [{"match": "00(.+)", "target": "trunk:sipgat"}]},`),
			`sip.dial_plan rule 1 (match "00(.+)"): no trunk is called "sipgat"; add it to "trunks" or change the target`},
		{"anonymous redirect to no line", at(`"trunks": [{"name": "sipgate", "registrar": "sip.example", "user": "4930", "password": "pw", "lines": [1], "prefix": "0"}], "anonymous": {"trunks": {"sipgate": {"action": "redirect", "line": 7}}},`),
			`anonymous calls, trunk "sipgate": line 7 is not one of this node's lines [1 2]`},
		{"anonymous for an unknown trunk", at(`"anonymous": {"trunks": {"sipgate": {"action": "refuse"}}},`),
			`anonymous.trunks: no trunk is called "sipgate"; use a name from "trunks"`},
		{"withhold bad prefix", at(`"withhold": {"prefix": "*31*x"},`),
			`withhold prefix "*31*x": want up to 8 of 0-9, * and # (such as *31*)`},
		{"duplicate index", repl(`"peers": [`, `"peers": [
    {"index": 7, "public_key": "EI1mjysvXOTKAgD4781cIY3O/LalPFV0ORgUlmfF+1Y=", "endpoint": "198.51.100.3:51820"},`),
			"peers[1] (alice): index 7 is used by another peer; each peer needs its own"},
		{"duplicate key", repl(`"peers": [`, `"peers": [
    {"index": 8, "public_key": "Y9//y9jiDSs1pIpWEtgYbJYWCjgZwXRRhhcrL4bDhzc=", "endpoint": "198.51.100.3:51820"},`),
			"peers[1] (alice): public_key is the same as peers[0]'s; one node cannot be paired twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.edit(goodConfig)))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse() error =\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "peerlined.json"),
			"config file " + filepath.Join(dir, "peerlined.json") + " does not exist: pass -config with the right file, or write one: " + exampleHint},
		{"empty", empty, "config " + empty + ": the file is empty; write the config as one JSON object, {...}: " + exampleHint},
		{"a directory", dir, "reading config " + dir + ": read " + dir + ": is a directory"},
	} {
		_, err := Load(tc.path)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: Load() error =\n%v\nwant\n%s", tc.name, err, tc.want)
		}
	}
}

// TestExampleLoads: the example every error message points at is valid.
func TestExampleLoads(t *testing.T) {
	if _, err := Load("../../rootfs/etc/peerline/peerlined.json"); err != nil {
		t.Errorf("the example config: %v", err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"publc_key", "public_key", 1}, {"kitten", "sitting", 3}, {"abc", "", 3}, {"", "abc", 3}, {"dchp", "dhcp", 2},
	} {
		if got := EditDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
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

// FuzzConfig feeds arbitrary bytes to the parser: it must never panic,
// every key or value the decoder refuses must be found and placed (no bare
// decoder message), and whatever it accepts must validate again unchanged
// (defaults are stable).
func FuzzConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte(`{"phone_port":"eth0","peers":[{"index":7,"name":"alice","publc_key":"x"}]}`))
	f.Add([]byte(`{"phone_port":"eth0","phones":{"dhcp":"yes"},"lines":[1.5]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"phone_port":"eth0","lines":[1],"peers":[{"index":1,"public_key":"Y9//y9jiDSs1pIpWEtgYbJYWCjgZwXRRhhcrL4bDhzc=","endpoint":"[::1]:1"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			if strings.HasPrefix(err.Error(), "json: ") {
				t.Fatalf("Parse(%q) = %v: the decoder's message, not placed in the file", b, err)
			}
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

// TestTrunksParse: the trunk section of docs/sip-service.md, with a rule
// to the trunk, parses; with DHCP any line may be named.
func TestTrunksParse(t *testing.T) {
	at := strings.Replace(goodConfig, `"lines": [1, 2],`, `"lines": [1, 2],
  "phones": {"dhcp": true},
  "trunks": [{"name": "sipgate", "registrar": "sipgate.de", "user": "4930123456", "password": "pw", "caller_id": "Smith", "lines": [1, 5], "prefix": "0"}],
  "anonymous": {"default": {"action": "accept"}, "trunks": {"sipgate": {"action": "refuse"}}, "peers": {"bob": {"action": "redirect", "line": 2}}},
  "withhold": {"prefix": "*31*", "lines": [3]},
  "sip": {"dial_plan": [{"match": "00(.+)", "rewrite": "00$1", "target": "trunk:sipgate"}]},`, 1)
	c, err := Parse([]byte(at))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Trunks) != 1 || c.Trunks[0].Prefix != "0" || c.Anonymous.Trunks["sipgate"].Action != "refuse" || c.Withhold.Prefix != "*31*" {
		t.Errorf("parsed %+v %+v %+v", c.Trunks, c.Anonymous, c.Withhold)
	}
}
