package lab

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNATKindClasses(t *testing.T) {
	for _, tc := range []struct {
		kind      NATKind
		mapping   Mapping
		filtering Filtering
	}{
		{FullCone, EIM, EIF},
		{RestrictedCone, EIM, ADF},
		{PortRestricted, EIM, APDF},
		{Symmetric, APDM, APDF},
	} {
		if got, err := ParseNATKind(string(tc.kind)); err != nil || got != tc.kind {
			t.Errorf("ParseNATKind(%q) = %q, %v", tc.kind, got, err)
		}
		if m, f := tc.kind.Mapping(), tc.kind.Filtering(); m != tc.mapping || f != tc.filtering {
			t.Errorf("%s: %s/%s, want %s/%s", tc.kind, m, f, tc.mapping, tc.filtering)
		}
	}
	for _, bad := range []string{"", "FC", "cone", "symmetric"} {
		if _, err := ParseNATKind(bad); err == nil {
			t.Errorf("ParseNATKind(%q): nil error", bad)
		}
	}
	if _, err := ParseInputPolicy("reject"); err == nil {
		t.Error("ParseInputPolicy(reject): nil error")
	}
}

func TestNATPortBlock(t *testing.T) {
	prevLo := -1
	for epoch := range 8 {
		lo, hi := natPortBlock(epoch)
		if lo < 1024 || hi > 65535 || hi-lo != 4095 || lo <= prevLo {
			t.Errorf("natPortBlock(%d) = %d-%d", epoch, lo, hi)
		}
		prevLo = lo
	}
	if lo, _ := natPortBlock(8); lo != 20000 {
		t.Errorf("natPortBlock(8) starts at %d, want the first block again", lo)
	}
}

// TestNATRuleset checks the statements that make each kind what it is;
// the lab test TestNATKinds checks that the kernel agrees.
func TestNATRuleset(t *testing.T) {
	for _, tc := range []struct {
		kind    NATKind
		policy  InputPolicy
		want    []string
		notWant []string
	}{
		{FullCone, InputDrop,
			[]string{`iifname "wan" dnat ip to udp dport map @eim`, "masquerade to :20000-24095\n", "update @eim", "policy drop;\n    ct state"},
			[]string{"random", "@contacted"}},
		{RestrictedCone, InputAccept,
			[]string{`ip saddr . udp dport @contacted dnat ip to udp dport map @eim`, "update @contacted { ip daddr . udp sport }", "hook input priority filter; policy accept;"},
			[]string{"random"}},
		{PortRestricted, InputDrop,
			[]string{"masquerade to :20000-24095\n"},
			[]string{"random", "dnat ip to", "@eim", "@contacted"}},
		{Symmetric, InputDrop,
			[]string{"masquerade to :20000-24095 random\n", `oifname "wan" masquerade random`},
			[]string{"dnat ip to", "@eim", "@contacted"}},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			rules := natRuleset(tc.kind, tc.policy, 20000, 24095)
			for _, w := range tc.want {
				if !strings.Contains(rules, w) {
					t.Errorf("ruleset lacks %q:\n%s", w, rules)
				}
			}
			for _, nw := range tc.notWant {
				if strings.Contains(rules, nw) {
					t.Errorf("ruleset has %q:\n%s", nw, rules)
				}
			}
			// Reloading must replace the table in one transaction.
			if !strings.Contains(rules, "table ip lab\ndelete table ip lab\ntable ip lab {") {
				t.Errorf("ruleset does not replace table ip lab atomically:\n%s", rules)
			}
		})
	}
}

func TestParseProbe(t *testing.T) {
	const nonce = "0123456789abcdef"
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
		want probeMsg
	}{
		{"echo", "plprobe1 ECHO " + nonce, true, probeMsg{kind: "ECHO", nonce: nonce}},
		{"seen", "plprobe1 SEEN " + nonce + " 198.51.100.11:20001", true,
			probeMsg{kind: "SEEN", nonce: nonce, seen: netip.MustParseAddrPort("198.51.100.11:20001")}},
		{"from", "plprobe1 FROM " + nonce + " 2", true, probeMsg{kind: "FROM", nonce: nonce, from: 2}},
		{"other magic", "plprobe2 ECHO " + nonce, false, probeMsg{}},
		{"short nonce", "plprobe1 ECHO 0123", false, probeMsg{}},
		{"bad nonce", "plprobe1 ECHO 0123456789abcdeg", false, probeMsg{}},
		{"seen without addr", "plprobe1 SEEN " + nonce, false, probeMsg{}},
		{"seen bad addr", "plprobe1 SEEN " + nonce + " 198.51.100.11", false, probeMsg{}},
		{"from negative", "plprobe1 FROM " + nonce + " -1", false, probeMsg{}},
		{"unknown kind", "plprobe1 PING " + nonce, false, probeMsg{}},
		{"echo with junk", "plprobe1 ECHO " + nonce + " x", false, probeMsg{}},
		{"empty", "", false, probeMsg{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseProbe([]byte(tc.in))
			if ok != tc.ok || got != tc.want {
				t.Errorf("parseProbe(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
			if ok {
				if back := string(got.append(nil)); back != tc.in {
					t.Errorf("append(parseProbe(%q)) = %q", tc.in, back)
				}
			}
		})
	}
}

func FuzzParseProbe(f *testing.F) {
	f.Add([]byte("plprobe1 ECHO 0123456789abcdef"))
	f.Add([]byte("plprobe1 SEEN 0123456789abcdef 198.51.100.11:20001"))
	f.Add([]byte("plprobe1 FROM 0123456789abcdef 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := parseProbe(b)
		if !ok {
			return
		}
		// Whatever parses must round-trip through its canonical form.
		again, ok := parseProbe(m.append(nil))
		if !ok || again != m {
			t.Fatalf("parseProbe(%q) = %+v, but its canonical form %q parses as %+v, %v", b, m, m.append(nil), again, ok)
		}
	})
}
