package sipmsg

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/peerline/peerline/pkg/numplan"
)

// crlf turns a readable "\n" message into the CRLF form phones send, with
// "{len}" in the headers replaced by the length of the body. The length is
// worked out here, not by the code under test.
func crlf(s string) string { return sipText(s, "\r\n") }

// lf is crlf with bare LF line endings.
func lf(s string) string { return sipText(s, "\n") }

func sipText(s, eol string) string {
	s = strings.ReplaceAll(s, "\n", eol)
	h, body, ok := strings.Cut(s, eol+eol)
	if !ok {
		return s
	}
	return strings.Replace(h, "{len}", strconv.Itoa(len(body)), 1) + eol + eol + body
}

// Alice's node knows Bob's as 7; Bob's node knows Alice's as 4.
func outVia7(a [4]byte) ([4]byte, bool) { return numplan.ToWire(a, 7) }

// everything maps any address, to show what is left alone on purpose.
func everything(a [4]byte) ([4]byte, bool) { return [4]byte{192, 0, 2, a[3]}, true }

func identity(a [4]byte) ([4]byte, bool) { return a, false }

// baresip's INVITE from Alice's line 1 to Bob's line 1, as Alice's phone
// sends it.
const inviteLocal = `INVITE sip:b@10.7.1.1 SIP/2.0
Via: SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK7a1c6b2f;rport
Max-Forwards: 70
To: <sip:b@10.7.1.1>
From: "Alice" <sip:a@10.0.1.1>;tag=a9d9b8a1c
Call-ID: 3c2a7f1e8b@10.0.1.1
CSeq: 1234 INVITE
Contact: <sip:a@10.0.1.1:5060;transport=udp>
User-Agent: baresip v1.0.0 (x86_64/linux) at 10.0.1.1
Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER
Content-Type: application/sdp
Content-Length: {len}

v=0
o=- 123 456 IN IP4 10.0.1.1
s=-
c=IN IP4 10.0.1.1
t=0 0
m=audio 10000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=rtcp:10001 IN IP4 10.0.1.1
a=sendrecv
`

// The same INVITE inside the tunnel: Alice is 10.255 (sender), Bob 10.254
// (receiver). Call-ID and User-Agent do not change.
const inviteWire = `INVITE sip:b@10.254.1.1 SIP/2.0
Via: SIP/2.0/UDP 10.255.1.1:5060;branch=z9hG4bK7a1c6b2f;rport
Max-Forwards: 70
To: <sip:b@10.254.1.1>
From: "Alice" <sip:a@10.255.1.1>;tag=a9d9b8a1c
Call-ID: 3c2a7f1e8b@10.0.1.1
CSeq: 1234 INVITE
Contact: <sip:a@10.255.1.1:5060;transport=udp>
User-Agent: baresip v1.0.0 (x86_64/linux) at 10.0.1.1
Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER
Content-Type: application/sdp
Content-Length: {len}

v=0
o=- 123 456 IN IP4 10.255.1.1
s=-
c=IN IP4 10.255.1.1
t=0 0
m=audio 10000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=rtcp:10001 IN IP4 10.255.1.1
a=sendrecv
`

// Bob's 200 OK as it arrives at Alice's node from the tunnel, and what
// Alice's phone gets: Bob shows up as 10.7.1.1, Alice's own addresses come
// back as 10.0.1.1. Bob's node added received= to the Via.
const okWire = `SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.254.1.1:5060;branch=z9hG4bK7a1c6b2f;rport=5060;received=10.254.1.1
To: <sip:b@10.255.1.1>;tag=b77
From: "Alice" <sip:a@10.254.1.1>;tag=a9d9b8a1c
Call-ID: 3c2a7f1e8b@10.0.1.1
CSeq: 1234 INVITE
Contact: <sip:b@10.255.1.1:5060>
Content-Type: application/sdp
Content-Length: {len}

v=0
o=- 9 9 IN IP4 10.255.1.1
s=-
c=IN IP4 10.255.1.1
t=0 0
m=audio 20000 RTP/AVP 0
`

const okLocalAtAlice = `SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.1.1:5060;branch=z9hG4bK7a1c6b2f;rport=5060;received=10.0.1.1
To: <sip:b@10.7.1.1>;tag=b77
From: "Alice" <sip:a@10.0.1.1>;tag=a9d9b8a1c
Call-ID: 3c2a7f1e8b@10.0.1.1
CSeq: 1234 INVITE
Contact: <sip:b@10.7.1.1:5060>
Content-Type: application/sdp
Content-Length: {len}

v=0
o=- 9 9 IN IP4 10.7.1.1
s=-
c=IN IP4 10.7.1.1
t=0 0
m=audio 20000 RTP/AVP 0
`

func TestRewrite(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		mapAddr func([4]byte) ([4]byte, bool)
		want    string // "" means unchanged
	}{
		{
			name:    "baresip INVITE outbound",
			in:      crlf(inviteLocal),
			mapAddr: outVia7,
			want:    crlf(inviteWire),
		},
		{
			name: "INVITE inbound at Bob's node",
			in:   crlf(inviteWire),
			mapAddr: func(a [4]byte) ([4]byte, bool) {
				return numplan.FromWire(a, 4)
			},
			want: crlf(strings.NewReplacer(
				"10.254.1.1", "10.0.1.1", "10.255.1.1", "10.4.1.1").Replace(inviteWire)),
		},
		{
			name: "200 OK with received= inbound at Alice's node",
			in:   crlf(okWire),
			mapAddr: func(a [4]byte) ([4]byte, bool) {
				return numplan.FromWire(a, 7)
			},
			want: crlf(okLocalAtAlice),
		},
		{
			name:    "bare LF line endings are kept",
			in:      lf(inviteLocal),
			mapAddr: outVia7,
			want:    lf(inviteWire),
		},
		{
			name: "compact forms",
			in: crlf(`ACK sip:b@10.7.1.1 SIP/2.0
v: SIP/2.0/UDP 10.0.1.1;branch=z9hG4bK1
f: <sip:a@10.0.1.1>;tag=1
t: <sip:b@10.7.1.1>;tag=2
i: x@10.0.1.1
m: <sip:a@10.0.1.1>
c: application/sdp
l: {len}

c=IN IP4 10.0.1.1
`),
			mapAddr: outVia7,
			want: crlf(`ACK sip:b@10.254.1.1 SIP/2.0
v: SIP/2.0/UDP 10.255.1.1;branch=z9hG4bK1
f: <sip:a@10.255.1.1>;tag=1
t: <sip:b@10.254.1.1>;tag=2
i: x@10.0.1.1
m: <sip:a@10.255.1.1>
c: application/sdp
l: {len}

c=IN IP4 10.255.1.1
`),
		},
		{
			name: "header names are case-insensitive, Content-Length spacing kept",
			in: crlf(`BYE sip:b@10.7.1.1 SIP/2.0
VIA: SIP/2.0/UDP 10.0.1.1
cOnTaCt : <sip:a@10.0.1.1>
CONTENT-TYPE:Application/SDP; charset=x
content-length :   {len}  

c=IN IP4 10.0.1.1
`),
			mapAddr: outVia7,
			want: crlf(`BYE sip:b@10.254.1.1 SIP/2.0
VIA: SIP/2.0/UDP 10.255.1.1
cOnTaCt : <sip:a@10.255.1.1>
CONTENT-TYPE:Application/SDP; charset=x
content-length :   {len}  

c=IN IP4 10.255.1.1
`),
		},
		{
			name: "every Via, every literal, maddr, folded lines",
			in: crlf(`INVITE sip:b@10.7.1.1;maddr=10.7.1.1 SIP/2.0
Via: SIP/2.0/UDP 10.0.1.2;branch=z9hG4bK2;received=10.0.1.1;maddr=10.0.1.2,
 SIP/2.0/UDP 10.0.1.1;branch=z9hG4bK1
Via: SIP/2.0/UDP 10.0.2.1;branch=z9hG4bK0
Content-Length: 0

`),
			mapAddr: outVia7,
			want: crlf(`INVITE sip:b@10.254.1.1;maddr=10.254.1.1 SIP/2.0
Via: SIP/2.0/UDP 10.255.1.2;branch=z9hG4bK2;received=10.255.1.1;maddr=10.255.1.2,
 SIP/2.0/UDP 10.255.1.1;branch=z9hG4bK1
Via: SIP/2.0/UDP 10.255.2.1;branch=z9hG4bK0
Content-Length: 0

`),
		},
		{
			name: "routing, transfer and identity headers",
			in: crlf(`REFER sip:b@10.7.1.1 SIP/2.0
Route: <sip:10.7.1.1;lr>
Record-Route: <sip:10.0.1.2;lr>
Refer-To: <sip:c@10.7.2.1>
r: <sip:c@10.7.2.1>
Referred-By: <sip:a@10.0.1.1>
b: <sip:a@10.0.1.1>
P-Asserted-Identity: "A" <sip:a@10.0.1.1>
P-Preferred-Identity: <sip:a@10.0.1.1>
Content-Length: 0

`),
			mapAddr: outVia7,
			want: crlf(`REFER sip:b@10.254.1.1 SIP/2.0
Route: <sip:10.254.1.1;lr>
Record-Route: <sip:10.255.1.2;lr>
Refer-To: <sip:c@10.254.2.1>
r: <sip:c@10.254.2.1>
Referred-By: <sip:a@10.255.1.1>
b: <sip:a@10.255.1.1>
P-Asserted-Identity: "A" <sip:a@10.255.1.1>
P-Preferred-Identity: <sip:a@10.255.1.1>
Content-Length: 0

`),
		},
		{
			name: "hold 0.0.0.0 is never mapped",
			in: crlf(`INVITE sip:b@10.7.1.1 SIP/2.0
Content-Type: application/sdp
Content-Length: {len}

c=IN IP4 0.0.0.0
a=sendonly
`),
			mapAddr: everything,
			want: crlf(`INVITE sip:b@192.0.2.1 SIP/2.0
Content-Type: application/sdp
Content-Length: {len}

c=IN IP4 0.0.0.0
a=sendonly
`),
		},
		{
			name: "Authorization uri and other headers are left alone",
			in: crlf(`INVITE sip:b@10.7.1.1 SIP/2.0
Authorization: Digest username="a", realm="10.7.1.1", nonce="x", uri="sip:b@10.7.1.1", response="0"
Proxy-Authorization: Digest uri="sip:b@10.7.1.1"
Call-ID: c@10.0.1.1
Warning: 399 10.0.1.1 "x"
Content-Length: 0

`),
			mapAddr: outVia7,
			want: crlf(`INVITE sip:b@10.254.1.1 SIP/2.0
Authorization: Digest username="a", realm="10.7.1.1", nonce="x", uri="sip:b@10.7.1.1", response="0"
Proxy-Authorization: Digest uri="sip:b@10.7.1.1"
Call-ID: c@10.0.1.1
Warning: 399 10.0.1.1 "x"
Content-Length: 0

`),
		},
		{
			name: "lookalike numbers are not addresses",
			in: crlf(`OPTIONS sip:b@10.7.1.1 SIP/2.0
Contact: <sip:110.0.1.15>, <sip:10.0.1.1234>, <sip:10.0.1.1.5>, <sip:x10.0.1.1>
Contact: <sip:10.0.1.1-x>, <sip:010.0.1.1>, <sip:10.0.01.1>, <sip:10.0.1.256>, <sip:10.0.1>
Via: SIP/2.0/UDP h;branch=z9hG4bK10.0.1.1;x=.10.0.1.1;y=10.0.1.1.
Content-Length: 0

`),
			mapAddr: outVia7,
			want: crlf(`OPTIONS sip:b@10.254.1.1 SIP/2.0
Contact: <sip:110.0.1.15>, <sip:10.0.1.1234>, <sip:10.0.1.1.5>, <sip:x10.0.1.1>
Contact: <sip:10.0.1.1-x>, <sip:010.0.1.1>, <sip:10.0.01.1>, <sip:10.0.1.256>, <sip:10.0.1>
Via: SIP/2.0/UDP h;branch=z9hG4bK10.0.1.1;x=.10.0.1.1;y=10.0.1.1.
Content-Length: 0

`),
		},
		{
			name: "response status line and non-SDP body are left alone",
			in: crlf(`SIP/2.0 480 10.0.1.1 unavailable
Contact: <sip:a@10.0.1.1>
Content-Type: application/pidf+xml
Content-Length: {len}

<contact>10.0.1.1</contact>`),
			mapAddr: outVia7,
			want: crlf(`SIP/2.0 480 10.0.1.1 unavailable
Contact: <sip:a@10.255.1.1>
Content-Type: application/pidf+xml
Content-Length: {len}

<contact>10.0.1.1</contact>`),
		},
		{
			name: "SDP lines other than o= c= a=rtcp: are left alone",
			in: crlf(`INVITE sip:b@10.7.1.1 SIP/2.0
Content-Type: application/sdp
Content-Length: {len}

s=10.0.1.1
m=audio 10.0.1.1
a=rtcp-fb:10.0.1.1
a=rtcp-mux
a=x:10.0.1.1
o=10.0.1.1
`),
			mapAddr: outVia7,
			want: crlf(`INVITE sip:b@10.254.1.1 SIP/2.0
Content-Type: application/sdp
Content-Length: {len}

s=10.0.1.1
m=audio 10.0.1.1
a=rtcp-fb:10.0.1.1
a=rtcp-mux
a=x:10.0.1.1
o=10.255.1.1
`),
		},
		{
			name: "no Content-Length: the body is the rest of the datagram",
			in: crlf(`INVITE sip:b@10.7.1.1 SIP/2.0
Content-Type: application/sdp

c=IN IP4 10.0.1.1
`),
			mapAddr: outVia7,
			want: crlf(`INVITE sip:b@10.254.1.1 SIP/2.0
Content-Type: application/sdp

c=IN IP4 10.255.1.1
`),
		},
		{
			name: "bytes after Content-Length are kept as they are",
			in: crlf(`INVITE sip:b@10.7.1.1 SIP/2.0
Content-Type: application/sdp
Content-Length: 19

c=IN IP4 10.0.1.1
c=IN IP4 10.0.1.1
`),
			mapAddr: outVia7,
			want: crlf(`INVITE sip:b@10.254.1.1 SIP/2.0
Content-Type: application/sdp
Content-Length: 21

c=IN IP4 10.255.1.1
c=IN IP4 10.0.1.1
`),
		},
		{
			name:    "shrinking body across a digit boundary",
			in:      "MESSAGE sip:x SIP/2.0\nc: application/sdp\nl: 100\n\n" + strings.Repeat("c=10.255.1.1\n", 7) + "123456789",
			mapAddr: func(a [4]byte) ([4]byte, bool) { return numplan.FromWire(a, 7) },
			want:    "MESSAGE sip:x SIP/2.0\nc: application/sdp\nl: 86\n\n" + strings.Repeat("c=10.7.1.1\n", 7) + "123456789",
		},
		{
			name:    "nothing to map",
			in:      crlf(inviteLocal),
			mapAddr: identity,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == "" {
				want = tt.in
			}
			prefix := []byte("prefix")
			got, changed, err := Rewrite(prefix, []byte(tt.in), tt.mapAddr)
			if err != nil {
				t.Fatalf("Rewrite(%q) error %v, want nil", tt.in, err)
			}
			if !bytes.HasPrefix(got, prefix) {
				t.Fatalf("Rewrite(%q) = %q, want it appended to %q", tt.in, got, prefix)
			}
			got = got[len(prefix):]
			if string(got) != want {
				t.Errorf("Rewrite(%q) =\n%s\nwant\n%s", tt.in, got, want)
			}
			if wantChanged := want != tt.in; changed != wantChanged {
				t.Errorf("Rewrite(%q) changed = %v, want %v", tt.in, changed, wantChanged)
			}
			checkContentLength(t, got)
		})
	}
}

func TestRewriteErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrNoHeaderEnd},
		{"no terminator", "INVITE sip:b@10.7.1.1 SIP/2.0", ErrNoHeaderEnd},
		{"no empty line", "INVITE sip:b@10.7.1.1 SIP/2.0\r\nVia: x\r\n", ErrNoHeaderEnd},
		{"last header unterminated", "INVITE sip:b@10.7.1.1 SIP/2.0\r\nVia: x", ErrNoHeaderEnd},
		{"RTP-ish", "\x80\x00\x00\x01\r\n\r\n", ErrNotSIP},
		{"HTTP", "GET / HTTP/1.1\r\n\r\n", ErrNotSIP},
		{"status without code", "SIP/2.0 OK\r\n\r\n", ErrNotSIP},
		{"request without version", "INVITE sip:b@10.7.1.1\r\n\r\n", ErrNotSIP},
		{"header without colon", "INVITE sip:b SIP/2.0\r\nVia SIP/2.0/UDP 10.0.1.1\r\n\r\n", ErrMalformedHeader},
		{"fold before any header", "INVITE sip:b SIP/2.0\r\n Via: x\r\n\r\n", ErrMalformedHeader},
		{"Content-Length too big", "INVITE sip:b SIP/2.0\r\nContent-Length: 5\r\n\r\nabc", ErrBadContentLength},
		{"Content-Length not a number", "INVITE sip:b SIP/2.0\r\nl: 1x\r\n\r\nabc", ErrBadContentLength},
		{"Content-Length empty", "INVITE sip:b SIP/2.0\r\nl:\r\n\r\n", ErrBadContentLength},
		{"Content-Length leading zero", "INVITE sip:b SIP/2.0\r\nl: 03\r\n\r\nabc", ErrBadContentLength},
		{"Content-Length huge", "INVITE sip:b SIP/2.0\r\nl: 99999999999999999999\r\n\r\n", ErrBadContentLength},
		{"Content-Length twice", "INVITE sip:b SIP/2.0\r\nl: 0\r\nContent-Length: 0\r\n\r\n", ErrBadContentLength},
		{"Content-Length folded", "INVITE sip:b SIP/2.0\r\nl: 0\r\n 0\r\n\r\n", ErrBadContentLength},
		{"Content-Type twice", "INVITE sip:b SIP/2.0\r\nc: a/b\r\nc: application/sdp\r\n\r\n", ErrBadContentType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			got, changed, err := Rewrite(dst, []byte(tt.in), everything)
			if !errors.Is(err, tt.want) {
				t.Errorf("Rewrite(%q) error = %v, want %v", tt.in, err, tt.want)
			}
			if string(got) != "keep" || changed {
				t.Errorf("Rewrite(%q) = %q, %v, want %q, false", tt.in, got, changed, "keep")
			}
		})
	}
}

func TestNextAddr(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"plain", "10.0.1.1", []string{"10.0.1.1"}},
		{"extremes", "0.0.0.0 255.255.255.255", []string{"0.0.0.0", "255.255.255.255"}},
		{"in a URI", "<sip:a@10.0.1.1:5060;maddr=10.0.1.2>", []string{"10.0.1.1", "10.0.1.2"}},
		{"SDP with TTL", "IN IP4 224.2.1.1/127", []string{"224.2.1.1"}},
		{"IPv4-mapped IPv6", "[::ffff:10.0.1.1]", []string{"10.0.1.1"}},
		{"SIP version", "SIP/2.0/UDP", nil},
		{"octet too big", "10.0.1.256", nil},
		{"leading zero", "10.0.01.1", nil},
		{"too many digits", "10.0.1.1234", nil},
		{"too many octets", "10.0.1.1.5", nil},
		{"too few octets", "10.0.1", nil},
		{"trailing dot", "10.0.1.1.", nil},
		{"leading dot", ".10.0.1.1", nil},
		{"glued to a letter", "a10.0.1.1 10.0.1.1b", nil},
		{"glued to hyphen and underscore", "-10.0.1.1 10.0.1.1_", nil},
		{"empty octet", "10..1.1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			s := []byte(tt.in)
			for i := 0; ; {
				start, end, a, ok := nextAddr(s, i)
				if !ok {
					break
				}
				if string(appendAddr(nil, a)) != string(s[start:end]) {
					t.Errorf("nextAddr(%q) = %v for %q", tt.in, a, s[start:end])
				}
				got = append(got, string(s[start:end]))
				i = end
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("nextAddr(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestIsSIP(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"INVITE", "INVITE sip:b@10.7.1.1 SIP/2.0\r\n", true},
		{"sips", "OPTIONS sips:b@10.7.1.1 SIP/2.0\r\n", true},
		{"tel", "INVITE tel:+15551234 SIP/2.0\r\n", true},
		{"upper-case scheme", "BYE SIP:b@x SIP/2.0\r\n", true},
		{"response", "SIP/2.0 200 OK\r\n", true},
		{"RTP", "\x80\x00\x12\x34\x00\x00\x00\xa0\xde\xad\xbe\xef", false},
		{"RTCP", "\x81\xc8\x00\x0c", false},
		{"STUN", "\x00\x01\x00\x00\x21\x12\xa4\x42", false},
		{"keep-alive", "\r\n\r\n", false},
		{"HTTP", "GET http://x/ HTTP/1.1\r\n", false},
		{"lower-case method", "invite sip:b SIP/2.0", false},
		{"short", "SIP/2.0", false},
		{"method too long", "ABCDEFGHIJKLMNOPQ sip:x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsSIP([]byte(tt.in)); got != tt.want {
				t.Errorf("IsSIP(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// swap is an involution on addresses (10.0 <-> 10.255, 10.7 <-> 10.254), so
// rewriting twice with it must give back the input byte for byte.
func swap(a [4]byte) ([4]byte, bool) {
	if a[0] != 10 {
		return a, false
	}
	switch a[1] {
	case 0:
		a[1] = 255
	case 255:
		a[1] = 0
	case 7:
		a[1] = 254
	case 254:
		a[1] = 7
	default:
		return a, false
	}
	return a, true
}

func TestRewriteAllocs(t *testing.T) {
	msg := []byte(crlf(inviteLocal))
	dst := make([]byte, 0, 2*len(msg))
	allocs := testing.AllocsPerRun(100, func() {
		_, _, _ = Rewrite(dst[:0], msg, outVia7)
	})
	if allocs != 0 {
		t.Errorf("Rewrite allocates %v times per message, want 0", allocs)
	}
}

// checkContentLength fails t unless msg's Content-Length, if it has one, is
// the length of its body. It parses independently of scan: the body starts
// after the first empty line, and bytes past Content-Length are only allowed
// if they were in the input too (checked by the callers' byte comparisons).
func checkContentLength(t *testing.T, msg []byte) {
	t.Helper()
	n, bodyStart, ok := contentLength(msg)
	if !ok {
		return
	}
	if n > len(msg)-bodyStart {
		t.Errorf("Content-Length %d > body length %d in %q", n, len(msg)-bodyStart, msg)
	}
}

// contentLength returns the Content-Length value and where the body starts.
func contentLength(msg []byte) (n, bodyStart int, ok bool) {
	s := string(msg)
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '\n')
		if j < 0 {
			return 0, 0, false
		}
		line := strings.TrimSuffix(s[i:i+j], "\r")
		first := i == 0
		i += j + 1
		if line == "" {
			return n, i, ok
		}
		if first || line[0] == ' ' || line[0] == '\t' {
			// The start line, or the continuation of another header.
			continue
		}
		name, value, found := strings.Cut(line, ":")
		name = strings.ToLower(strings.TrimSpace(name))
		if found && (name == "content-length" || name == "l") {
			n, ok = atoi(strings.TrimSpace(value))
		}
	}
	return 0, 0, false
}

func atoi(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func BenchmarkSIPInvite(b *testing.B) {
	msg := []byte(crlf(inviteLocal))
	dst := make([]byte, 0, 2*len(msg))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		_, _, _ = Rewrite(dst[:0], msg, outVia7)
	}
}

func BenchmarkIsSIP(b *testing.B) {
	rtp := []byte("\x80\x00\x12\x34\x00\x00\x00\xa0\xde\xad\xbe\xef")
	b.ReportAllocs()
	for b.Loop() {
		if IsSIP(rtp) {
			b.Fatal("RTP sniffed as SIP")
		}
	}
}
