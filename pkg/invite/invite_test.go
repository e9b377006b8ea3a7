package invite

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
)

// key returns a recognisable test key.
func key(b byte) nodekey.Key {
	var k nodekey.Key
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

var (
	exp   = time.Unix(1_800_000_000, 0)
	srvA  = Server{Host: "rv.peerline.example.org", Port: 3478, Port2: 3479, Key: key(0xA0)}
	srvB  = Server{Host: "rv2.example.net", Port: 3478, Port2: 3479, Key: key(0xB0)}
	srv4  = Server{Host: "198.51.100.7", Port: 443, Port2: 8443, Key: key(0xC0)}
	srv6  = Server{Host: "2001:db8::1", Port: 65535, Port2: 1, Key: key(0xD0)}
	basic = Invite{Inviter: key(1), Name: "alice", Servers: []Server{srvA}, Secret: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, Expires: exp}
)

// with returns basic changed by f.
func with(f func(*Invite)) Invite {
	iv := basic
	iv.Servers = append([]Server(nil), basic.Servers...)
	f(&iv)
	return iv
}

// roundTrips are valid invites; want is what Parse gives back (nil: the
// invite itself).
var roundTrips = []struct {
	name string
	iv   Invite
	want *Invite
}{
	{"one DNS server", basic, nil},
	{"two servers", with(func(iv *Invite) { iv.Servers = append(iv.Servers, srvB) }), nil},
	{"four servers of every kind", with(func(iv *Invite) { iv.Servers = []Server{srvA, srvB, srv4, srv6} }), nil},
	{"empty name", with(func(iv *Invite) { iv.Name = "" }), nil},
	{"32-byte UTF-8 name", with(func(iv *Invite) { iv.Name = strings.Repeat("é", 16) }), nil},
	{"host name of one character", with(func(iv *Invite) { iv.Servers[0].Host = "a" }), nil},
	{"host name of 253 characters", with(func(iv *Invite) {
		iv.Servers[0].Host = strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("b", 61)
	}), nil},
	{"upper-case host is lowered", with(func(iv *Invite) { iv.Servers[0].Host = "RV.Example.ORG" }),
		ptr(with(func(iv *Invite) { iv.Servers[0].Host = "rv.example.org" }))},
	{"IPv6 written long is shortened", with(func(iv *Invite) { iv.Servers[0].Host = "2001:0db8:0000::0001" }),
		ptr(with(func(iv *Invite) { iv.Servers[0].Host = "2001:db8::1" }))},
	{"IPv4-mapped IPv6 stays IPv6", with(func(iv *Invite) { iv.Servers[0].Host = "::ffff:198.51.100.7" }), nil},
	{"latest expiry", with(func(iv *Invite) { iv.Expires = time.Unix(1<<32-1, 0) }), nil},
	{"expiry in whole seconds", with(func(iv *Invite) { iv.Expires = exp.Add(999 * time.Millisecond) }), &basic},
}

func ptr[T any](v T) *T { return &v }

func same(a, b Invite) bool {
	return a.Expires.Equal(b.Expires) && reflect.DeepEqual(a.Servers, b.Servers) &&
		a.Inviter == b.Inviter && a.Name == b.Name && a.Secret == b.Secret
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range roundTrips {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.iv
			if tc.want != nil {
				want = *tc.want
			}
			for _, s := range []string{tc.iv.Code(), tc.iv.URI()} {
				got, err := Parse(s)
				if err != nil {
					t.Fatalf("Parse(%s) = %v", s, err)
				}
				if !same(got, want) {
					t.Errorf("Parse(%s) = %+v, want %+v", s, got, want)
				}
				if got.ID() != tc.iv.ID() {
					t.Errorf("ID changed in round trip")
				}
			}
		})
	}
}

// The format is a promise to every Pi already out there: a change that
// alters this code is a new version. The code was checked byte by byte
// against the layout in the package doc with a separate decoder (Python,
// bit-level base32, base-40 host, CRC-32C).
func TestGolden(t *testing.T) {
	const want = "0406P-JEJ00-0G40R-40M30-E2091-85GR3-8E1W8-124GK-2GAHC-5RR34-D1P70-X3RFJ-00820-C20A1-G7104-GM2RC-1M70Y-405C5-P6JRV-500BQ-85K4S-NS6JP-3E4C0-N7K15-7XRSH-851MA-HT99D-6MYMA-KANBN-JPTXB-XGP6S-B7D5N-PTVVH-EDTQE-YBVFN-Z266A-5WG"
	if got := basic.Code(); got != want {
		t.Errorf("basic.Code() = %s\nwant %s", got, want)
	}
}

func TestCodeLength(t *testing.T) {
	for _, tc := range []struct {
		name    string
		servers []Server
		max     int // characters without dashes
	}{
		{"one server", []Server{srvA}, 190},
		{"two servers", []Server{srvA, srvB}, 260},
	} {
		iv := with(func(iv *Invite) { iv.Servers = tc.servers })
		n := len(strings.ReplaceAll(iv.Code(), "-", ""))
		t.Logf("%s (%s, name %q): %d characters, URI %d", tc.name, hosts(tc.servers), iv.Name, n, len(iv.URI()))
		if n > tc.max {
			t.Errorf("%s: code of %d characters, want at most %d", tc.name, n, tc.max)
		}
	}
}

func hosts(ss []Server) string {
	var h []string
	for _, s := range ss {
		h = append(h, s.Host)
	}
	return strings.Join(h, ", ")
}

// Every change of one character to another code character, every swap of
// two neighbours and every dropped character must read as a typo.
func TestEveryTypoCaught(t *testing.T) {
	code := strings.ReplaceAll(with(func(iv *Invite) { iv.Servers = append(iv.Servers, srv4) }).Code(), "-", "")
	check := func(what, s string) {
		t.Helper()
		if _, err := Parse(s); !errors.Is(err, ErrTypo) {
			t.Fatalf("%s: Parse = %v, want ErrTypo", what, err)
		}
	}
	checked := 0
	for i := range len(code) {
		for _, c := range alphabet {
			if byte(c) == code[i] {
				continue
			}
			check("change", code[:i]+string(c)+code[i+1:])
			checked++
		}
		if i+1 < len(code) && code[i] != code[i+1] {
			check("swap", code[:i]+code[i+1:i+2]+code[i:i+1]+code[i+2:])
			checked++
		}
		check("drop", code[:i]+code[i+1:])
		check("double", code[:i+1]+code[i:])
		checked += 2
	}
	t.Logf("%d variants of a %d-character code, all caught", checked, len(code))
}

func TestParseForgiving(t *testing.T) {
	code := basic.Code()
	plain := strings.ReplaceAll(code, "-", "")
	lookAlike := strings.NewReplacer("0", "O", "1", "l").Replace(plain)
	for _, tc := range []struct{ name, in string }{
		{"as shown", code},
		{"lower case", strings.ToLower(code)},
		{"no dashes", plain},
		{"spaces", strings.ReplaceAll(code, "-", " ")},
		{"line breaks and tabs", "\t" + code[:20] + "\r\n" + code[20:] + "\n"},
		{"O for 0, l for 1", lookAlike},
		{"I for 1", strings.ReplaceAll(plain, "1", "i")},
		{"URI", basic.URI()},
		{"URI lower case", strings.ToLower(basic.URI())},
		{"URI with dashes", URIPrefix + code},
	} {
		got, err := Parse(tc.in)
		if err != nil || !same(got, basic) {
			t.Errorf("%s: Parse(%q) = %+v, %v; want basic", tc.name, tc.in, got, err)
		}
	}
}

// raw writes body as a code with a correct CRC, to reach the checks behind it.
func raw(body []byte) string {
	return encode32(binary.BigEndian.AppendUint32(body, crc32.Checksum(body, castagnoli)))
}

func body(iv Invite) []byte {
	b, err := iv.appendBinary(nil)
	if err != nil {
		panic(err)
	}
	return b[:len(b)-4]
}

func TestParseErrors(t *testing.T) {
	good := body(basic)
	edit := func(f func(b []byte) []byte) string {
		return raw(f(append([]byte(nil), good...)))
	}
	// Offsets in good: version 0, flags 1, expires 2, inviter 6, secret
	// 38, name length 54, name 55..59, server kind 60, host length 61.
	const kindAt, hostAt = 60, 62
	for _, tc := range []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrTypo},
		{"short", basic.Code()[:40], ErrTypo},
		{"U is no code character", "U" + basic.Code()[1:], ErrTypo},
		{"punctuation", strings.Replace(basic.Code(), "-", "!", 1), ErrTypo},
		{"non-ASCII", "é" + basic.Code(), ErrTypo},
		{"other URI scheme", "https://example.org/" + basic.Code(), ErrTypo},
		{"newer version", edit(func(b []byte) []byte { b[0] = VersionShort + 1; return b }), ErrVersion},
		{"version 0", edit(func(b []byte) []byte { b[0] = 0; return b }), ErrMalformed},
		{"unknown flag", edit(func(b []byte) []byte { b[1] |= 4; return b }), ErrMalformed},
		{"more servers than present", edit(func(b []byte) []byte { b[1] = 1; return b }), ErrMalformed},
		{"trailing byte", edit(func(b []byte) []byte { return append(b, 0) }), ErrMalformed},
		{"name too long", edit(func(b []byte) []byte { b[54] = 33; return b }), ErrMalformed},
		{"name with control character", edit(func(b []byte) []byte { b[55] = '\n'; return b }), ErrMalformed},
		{"name not UTF-8", edit(func(b []byte) []byte { b[55] = 0xff; return b }), ErrMalformed},
		{"zero inviter", edit(func(b []byte) []byte { clear(b[6:38]); return b }), ErrMalformed},
		{"zero expiry", edit(func(b []byte) []byte { clear(b[2:6]); return b }), nil},
		{"unknown host kind", edit(func(b []byte) []byte { b[kindAt] |= 3; return b }), ErrMalformed},
		{"unknown server flag", edit(func(b []byte) []byte { b[kindAt] |= 16; return b }), ErrMalformed},
		{"padding inside host", edit(func(b []byte) []byte { b[hostAt], b[hostAt+1] = 0, 0; return b }), ErrMalformed},
		{"host packing out of range", edit(func(b []byte) []byte { b[hostAt], b[hostAt+1] = 0xff, 0xff; return b }), ErrMalformed},
		{"host of zero characters", edit(func(b []byte) []byte {
			return append(append(b[:hostAt-1:hostAt-1], 0), good[hostAt+16:]...)
		}), ErrMalformed},
		{"default port spelled out", edit(func(b []byte) []byte {
			b[kindAt] |= flagPort
			return append(append(b[:hostAt+16:hostAt+16], 0x0d, 0x96), good[hostAt+16:]...)
		}), ErrMalformed},
		{"equal ports", edit(func(b []byte) []byte {
			b[kindAt] |= flagPort2
			return append(append(b[:hostAt+16:hostAt+16], 0x0d, 0x96), good[hostAt+16:]...)
		}), ErrMalformed},
		{"zero server key", edit(func(b []byte) []byte { clear(b[len(b)-32:]); return b }), ErrMalformed},
	} {
		_, err := Parse(tc.in)
		if tc.want == nil {
			// The epoch is a valid, long expired, expiry.
			if err != nil {
				t.Errorf("%s: Parse = %v, want success", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Parse = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		iv   Invite
	}{
		{"no inviter", with(func(iv *Invite) { iv.Inviter = nodekey.Key{} })},
		{"long name", with(func(iv *Invite) { iv.Name = strings.Repeat("x", 33) })},
		{"bidi override in name", with(func(iv *Invite) { iv.Name = "ali\u202ece" })},
		{"line separator in name", with(func(iv *Invite) { iv.Name = "a\u2028b" })},
		{"no servers", with(func(iv *Invite) { iv.Servers = nil })},
		{"five servers", with(func(iv *Invite) { iv.Servers = []Server{srvA, srvA, srvA, srvA, srvA} })},
		{"host with underscore", with(func(iv *Invite) { iv.Servers[0].Host = "rv_1.example.org" })},
		{"host in brackets", with(func(iv *Invite) { iv.Servers[0].Host = "[2001:db8::1]" })},
		{"host with port", with(func(iv *Invite) { iv.Servers[0].Host = "rv.example.org:3478" })},
		{"host with zone", with(func(iv *Invite) { iv.Servers[0].Host = "fe80::1%eth0" })},
		{"unspecified host", with(func(iv *Invite) { iv.Servers[0].Host = "0.0.0.0" })},
		{"empty host", with(func(iv *Invite) { iv.Servers[0].Host = "" })},
		{"host ending in a dot", with(func(iv *Invite) { iv.Servers[0].Host = "rv.example.org." })},
		{"host of 254 characters", with(func(iv *Invite) { iv.Servers[0].Host = strings.Repeat("a.", 127) })},
		{"port 0", with(func(iv *Invite) { iv.Servers[0].Port = 0 })},
		{"same ports", with(func(iv *Invite) { iv.Servers[0].Port2 = iv.Servers[0].Port })},
		{"no server key", with(func(iv *Invite) { iv.Servers[0].Key = nodekey.Key{} })},
		{"no expiry", with(func(iv *Invite) { iv.Expires = time.Time{} })},
		{"expiry after 2106", with(func(iv *Invite) { iv.Expires = time.Unix(1<<32, 0) })},
	} {
		if err := tc.iv.Validate(); err == nil {
			t.Errorf("%s: Validate = nil, want an error", tc.name)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Code did not panic on an invalid invite", tc.name)
				}
			}()
			tc.iv.Code()
		}()
	}
}

func TestExpired(t *testing.T) {
	for _, tc := range []struct {
		now  time.Time
		want bool
	}{
		{exp.Add(-time.Second), false},
		{exp, true},
		{exp.Add(time.Hour), true},
	} {
		if got := basic.Expired(tc.now); got != tc.want {
			t.Errorf("Expired(%v) = %v, want %v", tc.now, got, tc.want)
		}
	}
}

func TestBase32(t *testing.T) {
	for n := range 12 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(0x9c * (i + 1))
		}
		s := encode32(b)
		if len(s) != (8*n+4)/5 {
			t.Errorf("encode32(%d bytes) has %d characters, want %d", n, len(s), (8*n+4)/5)
		}
		got, err := decode32(s)
		if err != nil || string(got) != string(b) {
			t.Errorf("decode32(encode32(%x)) = %x, %v", b, got, err)
		}
	}
	if got := group("ABCDEFGHIJK"); got != "ABCDE-FGHIJ-K" {
		t.Errorf("group = %s", got)
	}
}
