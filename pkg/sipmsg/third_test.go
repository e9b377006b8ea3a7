package sipmsg

import (
	"bytes"
	"testing"

	"github.com/peerline/peerline/pkg/numplan"
)

// thirdTable names third nodes by a fixed tag per local index.
type thirdTable map[uint8]uint64

func (t thirdTable) WireTag(a [4]byte) (uint64, bool) {
	if a[0] != 10 {
		return 0, false
	}
	tag, ok := t[a[1]]
	return tag, ok
}

func (t thirdTable) LocalNode(tag uint64) (uint8, bool) {
	for k, v := range t {
		if v == tag {
			return k, true
		}
	}
	return 0, false
}

// Carol's node is tagged carolTag on the tunnel between Alice's node and
// Bob's. Bob numbers Alice 4 and Carol 5; Alice numbers Bob 7 and Carol 9.
const carolTag = 0xdeadbeef_01020304

var (
	thirdAtBob   = thirdTable{5: carolTag, 6: 0x77}
	thirdAtAlice = thirdTable{9: carolTag, 3: 0x88}
)

func outVia4(a [4]byte) ([4]byte, bool) { return numplan.ToWire(a, 4) }
func inVia7(a [4]byte) ([4]byte, bool)  { return numplan.FromWire(a, 7) }

// Bob's phone transfers Alice's call to Carol's phone: the REFER as Bob's
// phone sends it.
const referAtBob = `REFER sip:a@10.4.1.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK1
To: <sip:a@10.4.1.1>;tag=1
From: <sip:b@10.0.1.1>;tag=2
Call-ID: x@10.0.1.1
CSeq: 3 REFER
Contact: <sip:b@10.0.1.1:5060>
Refer-To: <sip:c@10.5.1.1>
Referred-By: <sip:b@10.0.1.1>
Content-Length: 0

`

func TestRewriteThird(t *testing.T) {
	wire, changed, err := RewriteThird(nil, []byte(referAtBob), outVia4, thirdAtBob)
	if err != nil || !changed {
		t.Fatalf("out of Bob's node: %v, changed %v", err, changed)
	}
	name := string(AppendWireName(nil, 1, 1, carolTag))
	if name != "1.1.3735928559.16909060.peerline.invalid" {
		t.Fatalf("wire name = %q", name)
	}
	if !bytes.Contains(wire, []byte("Refer-To: <sip:c@"+name+">\n")) {
		t.Errorf("Refer-To on the wire:\n%s", wire)
	}
	atAlice, _, err := RewriteThird(nil, wire, inVia7, thirdAtAlice)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"REFER sip:a@10.0.1.1:5060 SIP/2.0\n",
		"Refer-To: <sip:c@10.9.1.1>\n",
		"Referred-By: <sip:b@10.7.1.1>\n",
		"Contact: <sip:b@10.7.1.1:5060>\n",
	} {
		if !bytes.Contains(atAlice, []byte(want)) {
			t.Errorf("at Alice's phone, missing %q:\n%s", want, atAlice)
		}
	}
	// A node that does not know Carol leaves the name: it resolves nowhere.
	atStranger, _, err := RewriteThird(nil, wire, inVia7, thirdTable{9: 1})
	if err != nil || !bytes.Contains(atStranger, []byte("Refer-To: <sip:c@"+name+">\n")) {
		t.Errorf("at a node that does not know Carol (%v):\n%s", err, atStranger)
	}
}

func TestThirdLeftAlone(t *testing.T) {
	name := string(AppendWireName(nil, 1, 1, carolTag))
	tests := []struct{ name, field string }{
		{"unknown node", "Refer-To: <sip:c@10.8.1.1>"},
		{"hold address", "Contact: <sip:0.0.0.0>"},
		{"URI header part", "Refer-To: <sip:c@10.7.1.1?Replaces=10.5.1.1>"},
		{"not an address field", "Call-Info: <sip:10.5.1.1>"},
		{"leading zero in a name", "Refer-To: <sip:01.1.3735928559.16909060.peerline.invalid>"},
		{"name extended", "Refer-To: <sip:" + name + ".example>"},
		{"name with a label before", "Refer-To: <sip:x" + name + ">"},
		{"upper case suffix", "Refer-To: <sip:1.1.3735928559.16909060.PEERLINE.INVALID>"},
		{"tag part too long", "Refer-To: <sip:1.1.37359285590.16909060.peerline.invalid>"},
		{"only three numbers", "Refer-To: <sip:1.3735928559.16909060.peerline.invalid>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := "OPTIONS sip:x SIP/2.0\r\n" + tt.field + "\r\nContent-Length: 0\r\n\r\n"
			out, changed, err := RewriteThird(nil, []byte(msg), identity, thirdAtBob)
			if err != nil || changed || string(out) != msg {
				t.Errorf("RewriteThird(%q) = %q, %v, %v; want it unchanged", tt.field, out, changed, err)
			}
		})
	}
}

func TestMappableThird(t *testing.T) {
	msg := []byte("REFER sip:x SIP/2.0\r\nRefer-To: <sip:10.5.1.1>\r\nbroken\r\n\r\n")
	if _, _, err := RewriteThird(nil, msg, identity, thirdAtBob); err == nil {
		t.Fatal("the message should be refused")
	}
	if !MappableThird(msg, identity, thirdAtBob) {
		t.Error("a refused message naming a third node must count as mappable: passed on, it names the other node's node 5")
	}
	if MappableThird(msg, identity, thirdAtAlice) || Mappable(msg, identity) {
		t.Error("nothing this tunnel can name: not mappable")
	}
}

// FuzzThird checks RewriteThird's properties: with a table that maps a
// literal to a name and that name back, rewriting twice gives the input;
// the output grows within MaxGrowth; Content-Length stays the body length.
func FuzzThird(f *testing.F) {
	f.Add([]byte(referAtBob))
	wire, _, _ := RewriteThird(nil, []byte(referAtBob), identity, thirdAtBob)
	f.Add(wire)
	f.Add([]byte("INVITE sip:5.1.0.119.peerline.invalid SIP/2.0\r\nm: <sip:10.6.1.1>,<sip:1.1.0.119.peerline.invalid:5060>\r\nl: 0\r\n\r\n"))
	addTortureSeeds(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		out, changed, err := RewriteThird(nil, msg, swap, thirdAtBob)
		if err != nil {
			return
		}
		if len(out) > MaxGrowth(len(msg)) {
			t.Fatalf("RewriteThird(%q) grew to %d bytes, more than MaxGrowth", msg, len(out))
		}
		if changed == bytes.Equal(out, msg) {
			t.Fatalf("RewriteThird(%q) changed = %v, output %q", msg, changed, out)
		}
		if n0, b0, ok := contentLength(msg); ok && n0 == len(msg)-b0 {
			if n1, b1, ok := contentLength(out); !ok || n1 != len(out)-b1 {
				t.Fatalf("RewriteThird(%q) = %q: Content-Length %d, body %d bytes", msg, out, n1, len(out)-b1)
			}
		}
		back, _, err := RewriteThird(nil, out, swap, thirdAtBob)
		if err != nil || !bytes.Equal(back, msg) {
			t.Fatalf("RewriteThird twice of %q = %q, %v", msg, back, err)
		}
	})
}
