package sipmsg

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// addTortureSeeds adds the RFC 4475 messages and their localised forms, so
// that every target starts from real hostile input.
func addTortureSeeds(f *testing.F) {
	for _, dir := range []string{"valid", "invalid", "local/valid", "local/invalid"} {
		files, _ := filepath.Glob(filepath.Join(tortureDir, dir, "*.dat"))
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	if b, err := os.ReadFile("testdata/bench/invite.sip"); err == nil {
		f.Add(b)
	}
}

// stripDigits removes digits and dots: what must be left of a header or
// SDP line when only address literals may change.
func stripDigits(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c != '.' && (c < '0' || c > '9') {
			out = append(out, c)
		}
	}
	return out
}

// countHold counts the 0.0.0.0 literals in b that no digit or dot extends.
func countHold(b []byte) int {
	n := 0
	for k := 0; k+7 <= len(b); k++ {
		if string(b[k:k+7]) == "0.0.0.0" && (k == 0 || !isDigitOrDot(b[k-1])) && (k+7 == len(b) || !isDigitOrDot(b[k+7])) {
			n++
		}
	}
	return n
}

// FuzzHeaderValue checks the header tokenizer: mapping nothing changes
// nothing; mapping changes only digit runs; mapping with an involution twice
// gives back the input; and 0.0.0.0 is never handed to the map.
func FuzzHeaderValue(f *testing.F) {
	for _, s := range []string{
		` <sip:a@10.0.1.1:5060;maddr=10.0.1.2>;tag=1`,
		` "10.0.1.1 <?" <sip:c?d@10.7.2.1?Replaces=10.0.1.1%3Bx>;x=10.0.1.1`,
		` SIP/2.0/UDP 10.0.1.1;received=10.255.1.1;branch=z9hG4bK10.0.1.1`,
		"\r\n <sip:10.0.1.1>,\r\n\t<sip:10.7.0.0>",
		` "\"<" <sip:0.0.0.0>`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, s []byte, inURI bool) {
		same, changed := appendMappedURIs(nil, s, inURI, identity, nil)
		if changed || !bytes.Equal(same, s) {
			t.Fatalf("appendMappedURIs(%q, identity) = %q, %v", s, same, changed)
		}
		out, changed := appendMappedURIs(nil, s, inURI, func(a [4]byte) ([4]byte, bool) {
			if a == [4]byte{} {
				t.Fatalf("appendMappedURIs(%q) passed 0.0.0.0 to the map", s)
			}
			return swap(a)
		}, nil)
		if !changed && !bytes.Equal(out, s) {
			t.Fatalf("appendMappedURIs(%q) = %q, unchanged but different", s, out)
		}
		if !bytes.Equal(stripDigits(out), stripDigits(s)) {
			t.Fatalf("appendMappedURIs(%q) = %q: changed more than digits", s, out)
		}
		if len(out) > MaxGrowth(len(s)) {
			t.Fatalf("appendMappedURIs(%q) grew to %d bytes, more than MaxGrowth", s, len(out))
		}
		back, _ := appendMappedURIs(nil, out, inURI, swap, nil)
		if !bytes.Equal(back, s) {
			t.Fatalf("appendMappedURIs twice of %q = %q", s, back)
		}
	})
}

// FuzzSDP checks the SDP path: sdpDelta predicts exactly how much appendSDP
// grows the body (Content-Length depends on it), only o= c= a=rtcp:
// a=candidate: a=remote-candidates: lines change and only in their digits,
// hold (0.0.0.0) survives, and mapping back restores the body.
func FuzzSDP(f *testing.F) {
	for _, s := range []string{
		"v=0\r\no=- 1 1 IN IP4 10.0.1.1\r\nc=IN IP4 0.0.0.0\r\nm=audio 1 RTP/AVP 0\r\nc=IN IP4 10.7.1.1\r\na=rtcp:2 IN IP4 10.0.1.1\r\n",
		"c=IN IP4 10.0.1.1/127\na=candidate:1 1 UDP 1 10.0.1.1 1 typ host\na=rtcp-mux\n",
		"a=remote-candidates:1 10.7.1.1 20000 2 10.255.0.0 3\r\nc=10.0.1.1",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, changed := sdpDelta(body, swap)
		out := appendSDP(nil, body, swap)
		if len(out)-len(body) != d {
			t.Fatalf("sdpDelta(%q) = %d, appendSDP grew it by %d", body, d, len(out)-len(body))
		}
		if changed != !bytes.Equal(out, body) {
			t.Fatalf("sdpDelta(%q) changed = %v, output %q", body, changed, out)
		}
		if same := appendSDP(nil, body, identity); !bytes.Equal(same, body) {
			t.Fatalf("appendSDP(%q, identity) = %q", body, same)
		}
		// Line by line: same lines, same non-digits; lines of other types
		// identical.
		in, got := bytes.SplitAfter(body, []byte("\n")), bytes.SplitAfter(out, []byte("\n"))
		if len(in) != len(got) {
			t.Fatalf("appendSDP(%q) = %q: line count changed", body, out)
		}
		for k := range in {
			if sdpLine(in[k]) < 0 && !bytes.Equal(in[k], got[k]) {
				t.Fatalf("appendSDP changed line %q to %q", in[k], got[k])
			}
			if !bytes.Equal(stripDigits(in[k]), stripDigits(got[k])) {
				t.Fatalf("appendSDP changed %q to %q beyond digits", in[k], got[k])
			}
			if n := countHold(in[k]); n != countHold(got[k]) {
				t.Fatalf("appendSDP changed hold in %q to %q", in[k], got[k])
			}
		}
		if back := appendSDP(nil, out, swap); !bytes.Equal(back, body) {
			t.Fatalf("appendSDP twice of %q = %q", body, back)
		}
	})
}

// FuzzSIPMessage is the whole-message target, seeded with the table cases
// and the RFC 4475 corpus. Properties: a refused message leaves dst alone and
// its error is a Reason; with nothing to map the output is the input; the
// output grows within MaxGrowth; a rewritten message's Content-Length is its
// body length whenever the input's was; and mapping with an involution twice
// gives back the input; and what was mapped out once has nothing left to
// map (headers and the bodies that are read).
func FuzzSIPMessage(f *testing.F) {
	for _, s := range []string{
		inviteLocal, crlf(inviteLocal), crlf(inviteWire), crlf(okWire), okLocalAtAlice,
		"SIP/2.0 100 Trying\r\nv: SIP/2.0/UDP 10.0.1.1\r\nl: 0\r\n\r\n",
		"ACK sip:10.7.1.1 SIP/2.0\nc: application/sdp\n\nc=IN IP4 0.0.0.0\nc=IN IP4 10.0.1.1\n",
		"INVITE sip:b@10.7.1.1 SIP/2.0\r\nAuthorization: Digest uri=\"sip:b@10.7.1.1\"\r\nContact: <sip:110.0.1.15>\r\n\r\n",
		"INVITE sip:b SIP/2.0\r\nl: 5\r\n\r\nabc",
		crlf(blfNotifyLocal), crlf(blfNotifyWire), crlf(mwiNotifyLocal),
		"SIP/2.0 200 OK\nl: 36\n\nv=0\nc=IN IP4 10.0.1.1\na=ssrc:1 cname:10.7.1.1\n",
		"INVITE sip:b SIP/2.0\r\nc: application/sdp\r\ne: gzip\r\n\r\nc=IN IP4 10.0.1.1",
	} {
		f.Add([]byte(s))
	}
	addTortureSeeds(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		same, changed, ierr := Rewrite(nil, msg, identity)
		if c := Check(msg); c != ierr {
			t.Fatalf("Check(%q) = %v, Rewrite refuses with %v", msg, c, ierr)
		}
		if ierr == nil && (changed || !bytes.Equal(same, msg)) {
			t.Fatalf("Rewrite(%q, identity) = %q, %v, want the input", msg, same, changed)
		}
		dst := []byte("dst")
		out, changed, err := Rewrite(dst, msg, swap)
		if err != ierr {
			t.Fatalf("Rewrite(%q) error %v with a map, %v without: parsing depends on the map", msg, err, ierr)
		}
		if err != nil {
			if r := ReasonOf(err); r == 0 || r >= NumReasons {
				t.Fatalf("Rewrite(%q) error %v is not a Reason", msg, err)
			}
			if string(out) != "dst" || changed {
				t.Fatalf("Rewrite(%q) = %q, %v on error %v", msg, out, changed, err)
			}
			return
		}
		out = out[len("dst"):]
		if len(out) > MaxGrowth(len(msg)) {
			t.Fatalf("Rewrite(%q) grew to %d bytes, more than MaxGrowth", msg, len(out))
		}
		if changed == bytes.Equal(out, msg) {
			t.Fatalf("Rewrite(%q) changed = %v, output %q", msg, changed, out)
		}
		if n0, b0, ok := contentLength(msg); ok {
			n1, b1, ok := contentLength(out)
			switch {
			case !ok:
				t.Fatalf("Rewrite(%q) = %q: Content-Length lost", msg, out)
			case n0 == len(msg)-b0 && n1 != len(out)-b1:
				t.Fatalf("Rewrite(%q) = %q: Content-Length %d, body %d bytes", msg, out, n1, len(out)-b1)
			case n1-n0 != (len(out)-b1)-(len(msg)-b0):
				// Bytes past a short Content-Length are copied as they
				// are, so the length moves with the datagram.
				t.Fatalf("Rewrite(%q) = %q: Content-Length %d -> %d, datagram body %d -> %d",
					msg, out, n0, n1, len(msg)-b0, len(out)-b1)
			}
		}
		back, _, err := Rewrite(nil, out, swap)
		if err != nil || !bytes.Equal(back, msg) {
			t.Fatalf("Rewrite twice of %q = %q, %v", msg, back, err)
		}
		// No address of the sender's numbering is left in a field or a
		// body that is rewritten: mapping out once more changes nothing.
		wire, _, _ := Rewrite(nil, msg, outVia7)
		if again, changed, err := Rewrite(nil, wire, outVia7); err != nil || changed {
			t.Fatalf("Rewrite(%q) = %q, still to map: %q, %v", msg, wire, again, err)
		}
	})
}

// BenchmarkRewriteInvite rewrites a desk phone's INVITE with a 13-codec SDP
// (1.2 kB, seven literals) out through a tunnel: the SIP part of the cost
// of a call set-up, goal ≤ 10 µs and no allocation.
func BenchmarkRewriteInvite(b *testing.B) {
	msg, err := os.ReadFile("testdata/bench/invite.sip")
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, MaxGrowth(len(msg)))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		out, changed, err := Rewrite(dst[:0], msg, outVia7)
		if err != nil || !changed || len(out) <= len(msg) {
			b.Fatalf("Rewrite(INVITE) = %d bytes, %v, %v", len(out), changed, err)
		}
	}
}
