package sipmsg

import (
	"bytes"
	"strings"
	"testing"
)

// The bodies of issue 15 item 4, as Alice's phones send them (Bob's node is
// 7 at Alice's) and as they cross the tunnel. Each case is checked both
// ways: out at Alice's node, and the wire form back in to Alice's numbering
// (fromWireInverse7), which must give the input again.

// blfNotifyLocal is a Yealink-style busy-lamp NOTIFY: Alice's line 1 tells
// Bob's line 2, which watches it, that it is in a call with Bob's line 3.
// The dialog's id, call-id and tags are what a directed pickup copies into
// Replaces; they cross as they are, like the Call-ID header.
const blfNotifyLocal = `NOTIFY sip:201@10.7.2.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK-b1
From: <sip:101@10.0.1.1>;tag=n1
To: <sip:201@10.7.2.1>;tag=s1
Call-ID: blf1@10.7.2.1
CSeq: 3 NOTIFY
Contact: <sip:101@10.0.1.1:5060>
Event: dialog
Subscription-State: active;expires=1800
Content-Type: application/dialog-info+xml
Content-Length: {len}

<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="2" state="full" entity="sip:101@10.0.1.1">
<dialog id="d@10.0.1.1" call-id="c9@10.0.1.1" local-tag="10.0.1.1" remote-tag='10.7.3.1' direction="recipient">
<state>confirmed</state>
<local><identity display="Line 1">sip:101@10.0.1.1</identity><target uri="sip:101@10.0.1.1:5060"/></local>
<remote><identity>sip:301@10.7.3.1</identity><target uri="sip:301@10.7.3.1"/></remote>
</dialog>
</dialog-info>
`

const blfNotifyWire = `NOTIFY sip:201@10.254.2.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.255.1.1:5060;branch=z9hG4bK-b1
From: <sip:101@10.255.1.1>;tag=n1
To: <sip:201@10.254.2.1>;tag=s1
Call-ID: blf1@10.7.2.1
CSeq: 3 NOTIFY
Contact: <sip:101@10.255.1.1:5060>
Event: dialog
Subscription-State: active;expires=1800
Content-Type: application/dialog-info+xml
Content-Length: {len}

<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="2" state="full" entity="sip:101@10.255.1.1">
<dialog id="d@10.0.1.1" call-id="c9@10.0.1.1" local-tag="10.0.1.1" remote-tag='10.7.3.1' direction="recipient">
<state>confirmed</state>
<local><identity display="Line 1">sip:101@10.255.1.1</identity><target uri="sip:101@10.255.1.1:5060"/></local>
<remote><identity>sip:301@10.254.3.1</identity><target uri="sip:301@10.254.3.1"/></remote>
</dialog>
</dialog-info>
`

// mwiNotifyLocal is a message-waiting NOTIFY from Alice's voicemail line.
const mwiNotifyLocal = `NOTIFY sip:201@10.7.2.1 SIP/2.0
Via: SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK-m1
From: <sip:101@10.0.1.1>;tag=m1
To: <sip:201@10.7.2.1>;tag=m2
Call-ID: mwi1
CSeq: 2 NOTIFY
Event: message-summary
Subscription-State: active
Content-Type: Application/Simple-Message-Summary
Content-Length: {len}

Messages-Waiting: yes
Message-Account: sip:*97@10.0.1.1
Voice-Message: 2/8 (0/2)
`

const mwiNotifyWire = `NOTIFY sip:201@10.254.2.1 SIP/2.0
Via: SIP/2.0/UDP 10.255.1.1:5060;branch=z9hG4bK-m1
From: <sip:101@10.255.1.1>;tag=m1
To: <sip:201@10.254.2.1>;tag=m2
Call-ID: mwi1
CSeq: 2 NOTIFY
Event: message-summary
Subscription-State: active
Content-Type: Application/Simple-Message-Summary
Content-Length: {len}

Messages-Waiting: yes
Message-Account: sip:*97@10.255.1.1
Voice-Message: 2/8 (0/2)
`

func TestRewriteBodies(t *testing.T) {
	tests := []struct {
		name     string
		in, want string
	}{
		{"BLF dialog-info NOTIFY", crlf(blfNotifyLocal), crlf(blfNotifyWire)},
		{"MWI message-summary NOTIFY", crlf(mwiNotifyLocal), crlf(mwiNotifyWire)},
		{
			"a=ssrc cname",
			crlf("INVITE sip:b@10.7.1.1 SIP/2.0\nContent-Type: application/sdp\nContent-Length: {len}\n\n" +
				"v=0\nc=IN IP4 10.0.1.1\na=ssrc:4242 cname:101@10.0.1.1\na=ssrc:4242 msid:x 10.0.1.1\n"),
			crlf("INVITE sip:b@10.254.1.1 SIP/2.0\nContent-Type: application/sdp\nContent-Length: {len}\n\n" +
				"v=0\nc=IN IP4 10.255.1.1\na=ssrc:4242 cname:101@10.255.1.1\na=ssrc:4242 msid:x 10.255.1.1\n"),
		},
		{
			"SDP without a Content-Type",
			lf("SIP/2.0 200 OK\nContact: <sip:a@10.0.1.1>\nl: {len}\n\n" +
				"v=0\no=- 1 1 IN IP4 10.0.1.1\nc=IN IP4 10.0.1.1\n"),
			lf("SIP/2.0 200 OK\nContact: <sip:a@10.255.1.1>\nl: {len}\n\n" +
				"v=0\no=- 1 1 IN IP4 10.255.1.1\nc=IN IP4 10.255.1.1\n"),
		},
		{
			"a body without a Content-Type that is not SDP",
			crlf("MESSAGE sip:b@10.7.1.1 SIP/2.0\nContent-Length: {len}\n\nv=0 is not c=IN IP4 10.0.1.1\n"),
			crlf("MESSAGE sip:b@10.254.1.1 SIP/2.0\nContent-Length: {len}\n\nv=0 is not c=IN IP4 10.0.1.1\n"),
		},
		{
			"gzip with an empty body",
			crlf("INVITE sip:b@10.7.1.1 SIP/2.0\nContent-Type: application/sdp\nContent-Encoding: gzip\nContent-Length: 0\n\n"),
			crlf("INVITE sip:b@10.254.1.1 SIP/2.0\nContent-Type: application/sdp\nContent-Encoding: gzip\nContent-Length: 0\n\n"),
		},
		{
			"pidf is not read",
			crlf("NOTIFY sip:b@10.7.1.1 SIP/2.0\nContent-Type: application/pidf+xml\nContent-Length: {len}\n\n<tuple><contact>sip:10.0.1.1</contact></tuple>\n"),
			crlf("NOTIFY sip:b@10.254.1.1 SIP/2.0\nContent-Type: application/pidf+xml\nContent-Length: {len}\n\n<tuple><contact>sip:10.0.1.1</contact></tuple>\n"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed, err := Rewrite(nil, []byte(tt.in), outVia7)
			if err != nil || !changed {
				t.Fatalf("Rewrite(%q) = changed %v, error %v", tt.in, changed, err)
			}
			if string(got) != tt.want {
				t.Fatalf("Rewrite out =\n%s\nwant\n%s", got, tt.want)
			}
			checkContentLength(t, got)
			back, _, err := Rewrite(nil, got, fromWireInverse7)
			if err != nil || string(back) != tt.in {
				t.Fatalf("Rewrite back in = %q, %v, want the input", back, err)
			}
		})
	}
}

// TestRewriteEncodedBody: an SDP, dialog-info or message-summary body under
// gzip cannot be read, so neither mapped nor checked: refused, whatever it
// holds, so that the rewriter drops it.
func TestRewriteEncodedBody(t *testing.T) {
	for _, typ := range []string{"application/sdp", "application/dialog-info+xml", "application/simple-message-summary"} {
		msg := crlf("INVITE sip:b@10.7.1.1 SIP/2.0\nContent-Type: " + typ + "\nContent-Encoding: gzip\nContent-Length: {len}\n\n\x1f\x8b\x08\x00junk")
		if _, _, err := Rewrite(nil, []byte(msg), outVia7); ReasonOf(err) != ErrEncodedBody {
			t.Errorf("Rewrite(%q) error %v, want %v", msg, err, ErrEncodedBody)
		}
		m, err := Parse([]byte(msg))
		if err != nil || !m.Encoded() || m.SDP() != nil {
			t.Errorf("Parse(%q) = encoded %v, SDP %q, %v; want encoded, no SDP", msg, m.Encoded(), m.SDP(), err)
		}
	}
}

func TestParse(t *testing.T) {
	msg := []byte(crlf("INVITE sip:b@10.7.1.1 SIP/2.0\nv: SIP/2.0/UDP a\n ;branch=1\nI: c1\nX-Other: o\nCSeq: 1 INVITE\nc: application/SDP\nContent-Length: {len}\n\nv=0\nc=IN IP4 10.0.1.1\n") + "trailing bytes")
	m, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(m.StartLine()); got != "INVITE sip:b@10.7.1.1 SIP/2.0" {
		t.Errorf("StartLine() = %q", got)
	}
	type field struct{ name, value, is string }
	var got []field
	fs := m.Fields()
	for f, ok := fs.Next(); ok; f, ok = fs.Next() {
		is := ""
		for _, n := range []string{"via", "call-id", "cseq", "content-type", "content-length"} {
			if f.Is(n) {
				is = n
			}
		}
		got = append(got, field{string(f.Name()), string(f.Value()), is})
	}
	want := []field{
		{"v", " SIP/2.0/UDP a\r\n ;branch=1", "via"},
		{"I", " c1", "call-id"},
		{"X-Other", " o", ""},
		{"CSeq", " 1 INVITE", "cseq"},
		{"c", " application/SDP", "content-type"},
		{"Content-Length", " 24", "content-length"},
	}
	if len(got) != len(want) {
		t.Fatalf("Fields() = %q, want %q", got, want)
	}
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("field %d = %q, want %q", k, got[k], want[k])
		}
	}
	if b := string(m.SDP()); b != "v=0\r\nc=IN IP4 10.0.1.1\r\n" {
		t.Errorf("SDP() = %q: not the Content-Length bytes after the empty line", b)
	}
	var lines []string
	ls := LinesOf(m.Body())
	for l, ok := ls.Next(); ok; l, ok = ls.Next() {
		lines = append(lines, string(l))
	}
	if len(lines) != 2 || lines[0] != "v=0" || lines[1] != "c=IN IP4 10.0.1.1" {
		t.Errorf("LinesOf(body) = %q", lines)
	}

	// Where the old rewrite reader (first blank line followed by "v=0")
	// and sipmsg disagreed: now there is one answer.
	for _, tt := range []struct {
		name, msg string
		sdp       bool
	}{
		{"SDP type, body not at v=0", crlf("SIP/2.0 200 OK\nContent-Type: application/sdp\nContent-Length: {len}\n\no=x\nv=0\n"), true},
		{"another type starting v=0", crlf("SIP/2.0 200 OK\nContent-Type: text/plain\nContent-Length: {len}\n\nv=0\n"), false},
		{"v=0 past Content-Length", crlf("SIP/2.0 200 OK\nContent-Length: 0\n\n") + "v=0\r\n", false},
		{"gzip", crlf("SIP/2.0 200 OK\nContent-Type: application/sdp\ne: gzip\nContent-Length: {len}\n\nv=0\n"), false},
		{"no type, v=0", crlf("SIP/2.0 200 OK\nContent-Length: {len}\n\nv=0\n"), true},
	} {
		m, err := Parse([]byte(tt.msg))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if (m.SDP() != nil) != tt.sdp {
			t.Errorf("%s: SDP() = %q, want SDP %v", tt.name, m.SDP(), tt.sdp)
		}
	}
	if _, err := Parse([]byte("INVITE sip:b SIP/2.0\r\nl: 9\r\n\r\n")); ReasonOf(err) != ErrBadContentLength {
		t.Errorf("Parse of a short body = %v, want %v", err, ErrBadContentLength)
	}
}

func TestReaderAllocs(t *testing.T) {
	msg := []byte(crlf(inviteLocal))
	allocs := testing.AllocsPerRun(100, func() {
		m, err := Parse(msg)
		if err != nil {
			t.Fatal(err)
		}
		fs := m.Fields()
		for f, ok := fs.Next(); ok; f, ok = fs.Next() {
			_ = f.Is("call-id")
		}
		ls := LinesOf(m.SDP())
		for _, ok := ls.Next(); ok; _, ok = ls.Next() {
		}
	})
	if allocs != 0 {
		t.Errorf("reading a message allocates %v times, want 0", allocs)
	}
}

// TestOpaqueValue: only the dialog identifiers' quoted values are skipped,
// and an unclosed quote ends nothing.
func TestOpaqueValue(t *testing.T) {
	tests := []struct {
		in   string
		want string // the skipped values, joined by |
	}{
		{`<dialog id="a" call-id='b' local-tag = "c" remote-tag="d" x="e">`, "a|b|c|d"},
		{`<d:dialog d:id="a" xid="b" id=c ID="d">`, "a|d"},
		{`id="a"`, ""}, // not preceded by a blank
		{` call-id="unclosed id='x'`, "x"},
	}
	for _, tt := range tests {
		b := []byte(tt.in)
		var got [][]byte
		for i := 0; ; {
			vs, ve, ok := opaqueValue(b, i)
			if !ok {
				break
			}
			got = append(got, b[vs:ve])
			i = ve
		}
		if s := string(bytes.Join(got, []byte("|"))); s != tt.want {
			t.Errorf("opaqueValue(%q) skips %q, want %q", tt.in, s, tt.want)
		}
	}
}

// TestCheck: Check refuses exactly what Rewrite refuses.
func TestCheck(t *testing.T) {
	for _, msg := range []string{
		crlf(blfNotifyLocal), crlf(mwiNotifyLocal),
		crlf("INVITE sip:b@10.7.1.1 SIP/2.0\nContent-Type: application/sdp\nContent-Encoding: gzip\nContent-Length: {len}\n\nxx"),
		crlf("INVITE sip:b@10.7.1.1 SIP/2.0\nContent-Type: application/sdp\nContent-Encoding: gzip\nContent-Length: 0\n\n"),
		"INVITE sip:b SIP/2.0\r\nl: 9\r\n\r\n",
		"hello 10.0.1.1\r\n",
	} {
		_, _, want := Rewrite(nil, []byte(msg), outVia7)
		if got := Check([]byte(msg)); got != want {
			t.Errorf("Check(%q) = %v, Rewrite says %v", msg, got, want)
		}
	}
}

// FuzzParse checks the reader on its own: Parse accepts what Check accepts
// (but encoded bodies), the fields come in order inside the header block,
// each "name LWS : value", the body lies after them, and the lines of the
// body tile it. Offsets are found from capacities (off), since every slice
// the reader returns points into the message.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		crlf(inviteLocal), crlf(blfNotifyLocal), lf(mwiNotifyLocal),
		"INVITE sip:b SIP/2.0\r\nv: a\r\n  b\r\nl: 3\r\n\r\nabcdef",
		"SIP/2.0 200 OK\nContent-Length: 4\n\nv=0\n",
	} {
		f.Add([]byte(s))
	}
	addTortureSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		msg := bytes.Clone(in)[:len(in):len(in)]
		off := func(s []byte) int { return len(msg) - cap(s) }
		m, err := Parse(msg)
		if c := ReasonOf(Check(msg)); err != nil && ReasonOf(err) != c || err == nil && c != 0 && c != ErrEncodedBody {
			t.Fatalf("Parse(%q) = %v, Check says %v", msg, err, c)
		}
		if err != nil {
			return
		}
		pos := len(m.StartLine())
		fs := m.Fields()
		for h, ok := fs.Next(); ok; h, ok = fs.Next() {
			start := off(h.Raw)
			if start <= pos || len(h.Raw) == 0 || h.Raw[0] == ' ' || h.Raw[0] == '\t' {
				t.Fatalf("Parse(%q): field %q at %d, after %d", msg, h.Raw, start, pos)
			}
			name, value := h.Name(), h.Value()
			if len(name) == 0 || off(value) <= start+len(name) || off(value)+len(value) != start+len(h.Raw) ||
				string(bytes.Trim(h.Raw[len(name):len(h.Raw)-len(value)], " \t\r\n")) != ":" {
				t.Fatalf("Parse(%q): field %q is not name %q LWS : value %q", msg, h.Raw, name, value)
			}
			pos = start + len(h.Raw)
		}
		body := m.Body()
		if off(body) < pos || off(body)+len(body) > len(msg) {
			t.Fatalf("Parse(%q): body at %d before the last field's end %d", msg, off(body), pos)
		}
		next := off(body)
		ls := LinesOf(body)
		for line, ok := ls.Next(); ok; line, ok = ls.Next() {
			if len(line) > 0 && off(line) != next {
				t.Fatalf("Parse(%q): line %q at %d, want %d", msg, line, off(line), next)
			}
			next += len(line)
			for _, c := range []byte("\r\n") {
				if next < off(body)+len(body) && msg[next] == c && (c == '\n' || next+1 < off(body)+len(body) && msg[next+1] == '\n') {
					next++
				}
			}
		}
		if next != off(body)+len(body) {
			t.Fatalf("Parse(%q): the lines of the body end at %d, the body at %d", msg, next, off(body)+len(body))
		}
	})
}

func TestHeaderOf(t *testing.T) {
	compact := map[header]string{hdrVia: "v", hdrContact: "m", hdrFrom: "f", hdrTo: "t", hdrReferTo: "r",
		hdrReferredBy: "b", hdrContentLength: "l", hdrContentType: "c", hdrContentEncoding: "e", hdrCallID: "i"}
	for h := hdrOther + 1; h < numHeaders; h++ {
		names := []string{headerNames[h], strings.ToUpper(headerNames[h]), strings.ToTitle(headerNames[h][:1]) + headerNames[h][1:]}
		if c, ok := compact[h]; ok {
			names = append(names, c, strings.ToUpper(c))
		}
		for _, n := range names {
			if got, colon := headerOf([]byte(n + " :x")); got != h || colon != len(n)+1 {
				t.Errorf("headerOf(%q) = %v, %d, want %v", n, got, colon, h)
			}
		}
	}
	for _, n := range []string{"vias", "tx", "cseqq", "call_id", "k", "x", "@", "content-lengths", "p-asserted-identitx"} {
		if got, _ := headerOf([]byte(n + ":x")); got != hdrOther {
			t.Errorf("headerOf(%q) = %v, want none", n, got)
		}
	}
	if _, colon := headerOf([]byte("Via x")); colon != -1 {
		t.Errorf("headerOf without a colon found one at %d", colon)
	}
}
