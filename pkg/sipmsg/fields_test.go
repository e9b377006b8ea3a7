package sipmsg

import (
	"bytes"
	"errors"
	"testing"
)

// TestRewriteFields covers every field docs/design.md §4 lists, one call flow
// feature per case, outbound at Alice's node (Bob's node is 7).
func TestRewriteFields(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // "" means unchanged
	}{
		{
			name: "caller ID and history headers",
			in: crlf(`INVITE sip:b@10.7.1.1 SIP/2.0
Remote-Party-ID: "Alice" <sip:a@10.0.1.1>;party=calling;screen=no;privacy=off
P-Preferred-Identity: <sip:a@10.0.1.1>
P-Called-Party-ID: <sip:b@10.7.1.1>
Diversion: <sip:c@10.0.2.1>;reason=unconditional;counter=1
History-Info: <sip:c@10.0.2.1>;index=1, <sip:b@10.7.1.1>;index=1.1
Reply-To: <sip:a@10.0.1.1>
Path: <sip:10.0.1.2;lr>
Content-Length: 0

`),
			want: crlf(`INVITE sip:b@10.254.1.1 SIP/2.0
Remote-Party-ID: "Alice" <sip:a@10.255.1.1>;party=calling;screen=no;privacy=off
P-Preferred-Identity: <sip:a@10.255.1.1>
P-Called-Party-ID: <sip:b@10.254.1.1>
Diversion: <sip:c@10.255.2.1>;reason=unconditional;counter=1
History-Info: <sip:c@10.255.2.1>;index=1, <sip:b@10.254.1.1>;index=1.1
Reply-To: <sip:a@10.255.1.1>
Path: <sip:10.255.1.2;lr>
Content-Length: 0

`),
		},
		{
			name: "blind transfer: Refer-To keeps its Replaces, Call-ID and Replaces stay",
			in: crlf(`REFER sip:b@10.7.1.1 SIP/2.0
Call-ID: 10.0.1.1
Refer-To: <sip:c@10.7.2.1:5060?Replaces=10.0.1.1%3Bto-tag%3D1%3Bfrom-tag%3D2&Via=10.0.1.1>;x=10.0.1.1
Refer-To: <sip:c?d@10.7.2.1>
Referred-By: "10.0.1.1 <?" <sip:a@10.0.1.1>
b: "<?10.0.1.1" <sip:10.0.1.1>
Replaces: 10.0.1.1;to-tag=1;from-tag=2
Join: 10.0.1.1;to-tag=1;from-tag=2
In-Reply-To: 10.0.1.1
Content-Length: 0

`),
			want: crlf(`REFER sip:b@10.254.1.1 SIP/2.0
Call-ID: 10.0.1.1
Refer-To: <sip:c@10.254.2.1:5060?Replaces=10.0.1.1%3Bto-tag%3D1%3Bfrom-tag%3D2&Via=10.0.1.1>;x=10.255.1.1
Refer-To: <sip:c?d@10.254.2.1>
Referred-By: "10.255.1.1 <?" <sip:a@10.255.1.1>
b: "<?10.255.1.1" <sip:10.255.1.1>
Replaces: 10.0.1.1;to-tag=1;from-tag=2
Join: 10.0.1.1;to-tag=1;from-tag=2
In-Reply-To: 10.0.1.1
Content-Length: 0

`),
		},
		{
			name: "literals with and without ports, brackets, parameters, several times",
			in: crlf(`OPTIONS sip:10.7.1.1:5062;maddr=10.7.1.1;transport=udp SIP/2.0
Via: SIP/2.0/UDP 10.0.1.1:5060;received=10.0.1.1;rport=5060;maddr=10.0.1.1, SIP/2.0/UDP 10.0.1.2
To: sip:b@10.7.1.1:5062
From: sip:a@10.0.1.1;tag=1
Contact: <sip:a@10.0.1.1>;expires=60, sip:a@10.0.1.1:5061, <sip:a@[::ffff:10.0.1.1]>
Content-Length: 0

`),
			want: crlf(`OPTIONS sip:10.254.1.1:5062;maddr=10.254.1.1;transport=udp SIP/2.0
Via: SIP/2.0/UDP 10.255.1.1:5060;received=10.255.1.1;rport=5060;maddr=10.255.1.1, SIP/2.0/UDP 10.255.1.2
To: sip:b@10.254.1.1:5062
From: sip:a@10.255.1.1;tag=1
Contact: <sip:a@10.255.1.1>;expires=60, sip:a@10.255.1.1:5061, <sip:a@[::ffff:10.255.1.1]>
Content-Length: 0

`),
		},
		{
			name: "folding everywhere, even between name and colon",
			in: crlf(`INVITE sip:b@10.7.1.1 SIP/2.0
Contact
 : <sip:a@10.0.1.1>
Via: SIP/2.0/UDP
  10.0.1.1;branch=z9hG4bK1,
	SIP/2.0/UDP 10.0.1.2
Call-ID
 : c@10.0.1.1
Content-Type:
 application / SDP
l:
 {len}

c=IN IP4 10.0.1.1
`),
			want: crlf(`INVITE sip:b@10.254.1.1 SIP/2.0
Contact
 : <sip:a@10.255.1.1>
Via: SIP/2.0/UDP
  10.255.1.1;branch=z9hG4bK1,
	SIP/2.0/UDP 10.255.1.2
Call-ID
 : c@10.0.1.1
Content-Type:
 application / SDP
l:
 {len}

c=IN IP4 10.255.1.1
`),
		},
		{
			name: "re-INVITE on hold: 0.0.0.0, sendonly, inactive, rtcp-mux, several m= lines",
			in: crlf(`INVITE sip:b@10.7.1.1 SIP/2.0
Content-Type: application/sdp
Content-Length: {len}

v=0
o=alice 1 2 IN IP4 10.0.1.1
s=-
c=IN IP4 0.0.0.0
t=0 0
a=sendonly
m=audio 10000 RTP/AVP 0 101
c=IN IP4 10.0.1.1
a=rtcp:10001
a=rtcp:10001 IN IP4 10.0.1.1
a=rtcp-mux
a=inactive
m=video 10002 RTP/AVP 96
c=IN IP4 0.0.0.0
a=rtcp:10003 IN IP4 10.0.1.1
a=candidate:1 1 UDP 2130706431 10.0.1.1 10000 typ host
a=candidate:2 1 UDP 1694498815 203.0.113.9 10000 typ srflx raddr 10.0.1.1 rport 10000
a=remote-candidates:1 10.7.1.1 20000
`),
			want: crlf(`INVITE sip:b@10.254.1.1 SIP/2.0
Content-Type: application/sdp
Content-Length: {len}

v=0
o=alice 1 2 IN IP4 10.255.1.1
s=-
c=IN IP4 0.0.0.0
t=0 0
a=sendonly
m=audio 10000 RTP/AVP 0 101
c=IN IP4 10.255.1.1
a=rtcp:10001
a=rtcp:10001 IN IP4 10.255.1.1
a=rtcp-mux
a=inactive
m=video 10002 RTP/AVP 96
c=IN IP4 0.0.0.0
a=rtcp:10003 IN IP4 10.255.1.1
a=candidate:1 1 UDP 2130706431 10.255.1.1 10000 typ host
a=candidate:2 1 UDP 1694498815 203.0.113.9 10000 typ srflx raddr 10.255.1.1 rport 10000
a=remote-candidates:1 10.254.1.1 20000
`),
		},
		{
			name: "183 early media",
			in: crlf(`SIP/2.0 183 Session Progress
v: SIP/2.0/UDP 10.7.1.1;branch=z9hG4bK1;received=10.7.1.1
m: <sip:a@10.0.1.1>
c: application/sdp
l: {len}

v=0
o=- 1 1 IN IP4 10.0.1.1
c=IN IP4 10.0.1.1
m=audio 10000 RTP/AVP 0
`),
			want: crlf(`SIP/2.0 183 Session Progress
v: SIP/2.0/UDP 10.254.1.1;branch=z9hG4bK1;received=10.254.1.1
m: <sip:a@10.255.1.1>
c: application/sdp
l: {len}

v=0
o=- 1 1 IN IP4 10.255.1.1
c=IN IP4 10.255.1.1
m=audio 10000 RTP/AVP 0
`),
		},
		{
			name: "a compressed body of a type not read is not text",
			in: crlf(`INVITE sip:b@10.7.1.1 SIP/2.0
Content-Type: text/plain
e: gzip
Content-Length: {len}

c=IN IP4 10.0.1.1
`),
			want: crlf(`INVITE sip:b@10.254.1.1 SIP/2.0
Content-Type: text/plain
e: gzip
Content-Length: {len}

c=IN IP4 10.0.1.1
`),
		},
		{
			name: "identity encoding and a type parameter are still SDP",
			in: crlf(`INVITE sip:b@10.7.1.1 SIP/2.0
Content-Encoding: identity
Content-Type: application/sdp;charset=utf-8
Content-Length: {len}

c=IN IP4 10.0.1.1
`),
			want: crlf(`INVITE sip:b@10.254.1.1 SIP/2.0
Content-Encoding: identity
Content-Type: application/sdp;charset=utf-8
Content-Length: {len}

c=IN IP4 10.255.1.1
`),
		},
		{
			name: "lookalike content types are not SDP",
			in: crlf(`INVITE sip:b@10.7.1.1 SIP/2.0
Content-Type: application/sdpx
Content-Length: {len}

c=IN IP4 10.0.1.1
`),
			want: crlf(`INVITE sip:b@10.254.1.1 SIP/2.0
Content-Type: application/sdpx
Content-Length: {len}

c=IN IP4 10.0.1.1
`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == "" {
				want = tt.in
			}
			got, changed, err := Rewrite(nil, []byte(tt.in), outVia7)
			if err != nil {
				t.Fatalf("Rewrite(%q) error %v", tt.in, err)
			}
			if string(got) != want {
				t.Errorf("Rewrite(%q) =\n%s\nwant\n%s", tt.in, got, want)
			}
			if changed != (want != tt.in) {
				t.Errorf("Rewrite(%q) changed = %v, want %v", tt.in, changed, want != tt.in)
			}
			checkContentLength(t, got)
			// And back in at Bob's node... is another mapping; mapping back
			// with the inverse at Alice's must give the input.
			back, _, err := Rewrite(nil, got, func(a [4]byte) ([4]byte, bool) {
				return fromWireInverse7(a)
			})
			if err != nil || !bytes.Equal(back, []byte(tt.in)) {
				t.Errorf("inverse of Rewrite(%q) = %q, %v, want the input", tt.in, back, err)
			}
		})
	}
}

// fromWireInverse7 undoes outVia7: 10.255 -> 10.0 and 10.254 -> 10.7, which
// is what Alice's node does to its own message coming back in a reply.
func fromWireInverse7(a [4]byte) ([4]byte, bool) {
	if a[0] != 10 {
		return a, false
	}
	switch a[1] {
	case 255:
		a[1] = 0
	case 254:
		a[1] = 7
	default:
		return a, false
	}
	return a, true
}

func TestReason(t *testing.T) {
	tests := []struct {
		r    Reason
		name string
	}{
		{0, "ok"},
		{ErrNotSIP, "not-sip"},
		{ErrNoHeaderEnd, "no-header-end"},
		{ErrMalformedHeader, "malformed-header"},
		{ErrBadContentLength, "bad-content-length"},
		{ErrBadContentType, "bad-content-type"},
		{ErrEncodedBody, "encoded-body"},
		{NumReasons, "reason-7"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.name {
			t.Errorf("Reason(%d).String() = %q, want %q", tt.r, got, tt.name)
		}
		if tt.r.Error() == "" {
			t.Errorf("%v.Error() is empty", tt.r)
		}
	}
	_, _, err := Rewrite(nil, []byte("INVITE sip:b SIP/2.0\r\nl: 9\r\n\r\n"), outVia7)
	if got := ReasonOf(err); got != ErrBadContentLength || !errors.Is(err, ErrBadContentLength) {
		t.Errorf("ReasonOf(%v) = %v, want %v", err, got, ErrBadContentLength)
	}
	if got := ReasonOf(nil); got != 0 {
		t.Errorf("ReasonOf(nil) = %v, want 0", got)
	}
	if got := ReasonOf(errors.New("x")); got != NumReasons {
		t.Errorf("ReasonOf(foreign) = %v, want %v", got, NumReasons)
	}
}

func TestMappable(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"local address in a Call-ID", "INVITE sip:b SIP/2.0\r\ni: x@10.0.1.1\r\nl: 9\r\n\r\n", true},
		{"peer's address in a body", "junk\x00\x80c=IN IP4 10.7.1.1", true},
		{"public and documentation addresses", "Via: 192.0.2.1, 203.0.113.9\r\n", false},
		{"hold only", "c=IN IP4 0.0.0.0", false},
		{"lookalikes", "110.0.1.1 10.0.1.1.1 x10.0.1.1 10.0.1.256", false},
		{"another node's address", "10.9.1.1", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Mappable([]byte(tt.in), outVia7); got != tt.want {
				t.Errorf("Mappable(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
