package invite

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/peerline/peerline/pkg/nodekey"
)

var (
	srvIP   = Server{Host: "198.51.100.7", Port: DefaultPort, Port2: DefaultPort + 1, Key: key(0xE0)}
	srvName = Server{Host: "rv.example.org", Port: DefaultPort, Port2: DefaultPort + 1, Key: key(0xF0)}
	// ipOnly is the typical short invite: one server by IPv4, default ports.
	ipOnly = with(func(iv *Invite) { iv.Servers = []Server{srvIP} })
)

// hostLen returns a DNS name of n characters.
func hostLen(n int) string {
	var sb strings.Builder
	for sb.Len() < n {
		if sb.Len() > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(strings.Repeat("a", min(63, n-sb.Len())))
	}
	h := sb.String()
	if h[len(h)-1] == '.' { // a label cannot be empty
		h = h[:len(h)-2] + "bb"
	}
	return h
}

// addrOnly is what a short code says about a server.
func addrOnly(s Server) Server {
	s.Key = nodekey.Key{}
	return s
}

// shortRoundTrips are complete invites; the short code names Servers[0].
var shortRoundTrips = []struct {
	name string
	iv   Invite
}{
	{"IPv4, default ports", ipOnly},
	{"DNS name", with(func(iv *Invite) { iv.Servers = []Server{srvName} })},
	{"long DNS name, two servers", basic},
	{"IPv6 with both ports", with(func(iv *Invite) { iv.Servers = []Server{srv6, srvA} })},
	{"IPv4 with both ports", with(func(iv *Invite) { iv.Servers = []Server{srv4} })},
	{"four servers, code names the last kind", with(func(iv *Invite) { iv.Servers = []Server{srv4, srvA, srvB, srv6} })},
	{"host name of 253 characters", with(func(iv *Invite) {
		iv.Servers[0].Host = hostLen(253)
		iv.Name = strings.Repeat("é", 16)
	})},
	{"one-character host", with(func(iv *Invite) { iv.Servers[0].Host = "a" })},
	{"empty name", with(func(iv *Invite) { iv.Name = "" })},
	{"latest expiry", with(func(iv *Invite) { iv.Expires = time.Unix(1<<32-1, 0) })},
	{"epoch", with(func(iv *Invite) { iv.Expires = time.Unix(0, 0) })},
}

func TestShortRoundTrip(t *testing.T) {
	for _, tc := range shortRoundTrips {
		t.Run(tc.name, func(t *testing.T) {
			blob, err := SealBlob(tc.iv)
			if err != nil {
				t.Fatalf("SealBlob = %v", err)
			}
			for _, s := range []string{tc.iv.ShortCode(), tc.iv.ShortURI(), strings.ToLower(tc.iv.ShortCode())} {
				got, err := Parse(s)
				if err != nil {
					t.Fatalf("Parse(%s) = %v", s, err)
				}
				want := Invite{Servers: []Server{addrOnly(tc.iv.Servers[0])}, Secret: tc.iv.Secret, Expires: tc.iv.Expires, short: true}
				if !got.Short() || !reflect.DeepEqual(got, want) {
					t.Fatalf("Parse(%s) = %+v, want %+v", s, got, want)
				}
				if err := got.Validate(); err != nil {
					t.Errorf("Validate of a parsed short invite = %v", err)
				}
				if again := got.ShortCode(); again != tc.iv.ShortCode() {
					t.Errorf("ShortCode of the parsed invite = %s, want %s", again, tc.iv.ShortCode())
				}
				if got.ID() != tc.iv.ID() {
					t.Errorf("ID changed in round trip")
				}
				if err := got.Open(blob); err != nil {
					t.Fatalf("Open = %v", err)
				}
				if got.Short() || !same(got, tc.iv) {
					t.Errorf("after Open: %+v (short %v), want %+v", got, got.Short(), tc.iv)
				}
				// Opened, it is a complete invite again.
				if again, err := Parse(got.Code()); err != nil || !same(again, tc.iv) || again.Short() {
					t.Errorf("Parse(Code of the opened invite) = %+v, %v", again, err)
				}
			}
		})
	}
}

// Long codes stay long: Parse never marks them Short.
func TestLongIsNotShort(t *testing.T) {
	for _, tc := range roundTrips {
		got, err := Parse(tc.iv.Code())
		if err != nil || got.Short() {
			t.Errorf("%s: Parse(Code) = Short %v, %v", tc.name, got.Short(), err)
		}
		if err := got.Open(make([]byte, MaxBlobLen)); err == nil || errors.Is(err, ErrBlob) {
			t.Errorf("%s: Open of a complete invite = %v, want a plain error", tc.name, err)
		}
	}
}

// A short invite cannot pass for a complete one before Open.
func TestShortNotComplete(t *testing.T) {
	iv, err := Parse(basic.ShortCode())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SealBlob(iv); err == nil {
		t.Errorf("SealBlob(short invite) = nil error")
	}
	defer func() {
		if recover() == nil {
			t.Errorf("Code of a short invite did not panic")
		}
	}()
	iv.Code()
}

// Checked byte by byte against the layout in the package doc with a
// separate encoder (Python: CRC-32C, bit-level base32, base-40 host).
func TestShortGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		srv  Server
		want string
	}{
		{"IPv4", srvIP, "080PP-JEJ00-0G40R-40M30-E2091-85GR3-8E1W8-CCCV4-0ZBX4-5WX"},
		{"DNS name", srvName, "0806P-JEJ00-0G40R-40M30-E2091-85GR3-8E1W8-0WX0P-4C0N7-K157X-RSH0N-NBZT0"},
		{"IPv6, ports 443 and 8443", Server{Host: "2001:db8::1", Port: 443, Port2: 8443, Key: key(9)},
			"0876P-JEJ00-0G40R-40M30-E2091-85GR3-8E1W8-2008D-Q0000-00000-00000-00000-20DV4-3XXXH-199C"},
	} {
		iv := with(func(iv *Invite) { iv.Servers = []Server{tc.srv, srvA} })
		if got := iv.ShortCode(); got != tc.want {
			t.Errorf("%s: ShortCode() = %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

func TestShortCodeLength(t *testing.T) {
	for _, tc := range []struct {
		name string
		srv  Server
		max  int // characters without dashes
	}{
		{"IPv4, default ports", srvIP, 48},
		{"DNS name rv.example.org", srvName, 60},
		{"IPv6, both ports", srv6, 74},
	} {
		iv := with(func(iv *Invite) { iv.Servers = []Server{tc.srv} })
		code := iv.ShortCode()
		n := len(strings.ReplaceAll(code, "-", ""))
		long := len(strings.ReplaceAll(iv.Code(), "-", ""))
		t.Logf("%s: %d characters, %d with dashes, URI %d (long code %d, %d with dashes)", tc.name, n, len(code), len(iv.ShortURI()), long, len(iv.Code()))
		if n > tc.max || 2*n > long {
			t.Errorf("%s: short code of %d characters, want at most %d (and half the long %d)", tc.name, n, tc.max, long)
		}
	}
}

// As TestEveryTypoCaught, for short codes.
func TestShortEveryTypoCaught(t *testing.T) {
	for _, iv := range []Invite{ipOnly, basic} {
		code := strings.ReplaceAll(iv.ShortCode(), "-", "")
		check := func(what, s string) {
			t.Helper()
			if _, err := Parse(s); !errors.Is(err, ErrTypo) {
				t.Fatalf("%s of %s: Parse(%s) = %v, want ErrTypo", what, code, s, err)
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
		t.Logf("%d variants of a %d-character short code, all caught", checked, len(code))
	}
}

func TestShortParseErrors(t *testing.T) {
	good := shortBody(ipOnly)
	edit := func(f func(b []byte) []byte) string {
		return raw(f(append([]byte(nil), good...)))
	}
	// Offsets in good: version 0, flags 1, expires 2, secret 6, IPv4 22.
	for _, tc := range []struct {
		name string
		in   string
		want error
	}{
		{"short", ipOnly.ShortCode()[:40], ErrTypo},
		{"newer version", edit(func(b []byte) []byte { b[0] = VersionShort + 1; return b }), ErrVersion},
		{"unknown flag", edit(func(b []byte) []byte { b[1] |= 16; return b }), ErrMalformed},
		{"unknown host kind", edit(func(b []byte) []byte { b[1] |= 3; return b }), ErrMalformed},
		{"IPv4 read as a name", edit(func(b []byte) []byte { b[1] = kindName; return b }), ErrMalformed},
		{"trailing byte", edit(func(b []byte) []byte { return append(b, 0) }), ErrMalformed},
		{"truncated address", edit(func(b []byte) []byte { return b[:len(b)-1] }), ErrMalformed},
		{"unspecified address", edit(func(b []byte) []byte { clear(b[22:26]); return b }), ErrMalformed},
		{"port flag without port", edit(func(b []byte) []byte { b[1] |= flagPort; return b }), ErrMalformed},
		{"default port spelled out", edit(func(b []byte) []byte {
			b[1] |= flagPort
			return append(b, 0x0d, 0x96)
		}), ErrMalformed},
		{"equal ports", edit(func(b []byte) []byte {
			b[1] |= flagPort2
			return append(b, 0x0d, 0x96)
		}), ErrMalformed},
		{"a long code's layout as version 2", edit(func([]byte) []byte {
			b := body(basic)
			b[0] = VersionShort
			return b
		}), ErrMalformed},
		{"zero expiry", edit(func(b []byte) []byte { clear(b[2:6]); return b }), nil},
		{"zero secret", edit(func(b []byte) []byte { clear(b[6:22]); return b }), nil},
	} {
		iv, err := Parse(tc.in)
		if tc.want == nil {
			if err != nil || !iv.Short() {
				t.Errorf("%s: Parse = %v (short %v), want a short invite", tc.name, err, iv.Short())
			}
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Parse = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func shortBody(iv Invite) []byte {
	b, err := iv.appendShort(nil)
	if err != nil {
		panic(err)
	}
	return b[:len(b)-4]
}

func TestShortValidate(t *testing.T) {
	short, err := Parse(ipOnly.ShortCode())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(iv *Invite)
	}{
		{"no server", func(iv *Invite) { iv.Servers = nil }},
		{"two servers", func(iv *Invite) { iv.Servers = []Server{srvIP, srvIP} }},
		{"bad host", func(iv *Invite) { iv.Servers = []Server{{Host: "a_b", Port: 1, Port2: 2}} }},
		{"same ports", func(iv *Invite) { iv.Servers = []Server{{Host: "a", Port: 1, Port2: 1}} }},
		{"no expiry", func(iv *Invite) { iv.Expires = time.Time{} }},
	} {
		iv := short
		tc.edit(&iv)
		if err := iv.Validate(); err == nil {
			t.Errorf("%s: Validate = nil, want an error", tc.name)
		}
	}
	// A complete invite needs what only the blob has; ShortCode of it
	// checks that too, so the inviter never hands out a code whose blob
	// it cannot seal.
	for _, tc := range []struct {
		name string
		iv   Invite
	}{
		{"no inviter", with(func(iv *Invite) { iv.Inviter = nodekey.Key{} })},
		{"no key for a server the code does not name", with(func(iv *Invite) { iv.Servers = []Server{srvIP, addrOnly(srvA)} })},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: ShortCode did not panic", tc.name)
				}
			}()
			tc.iv.ShortCode()
		}()
	}
}

// sealPlain seals an arbitrary plaintext as SealBlob would, with a fixed
// nonce, to reach the checks behind the authentication.
func sealPlain(secret [16]byte, version byte, pt []byte) []byte {
	out := append([]byte{version}, make([]byte, blobNonceLen)...)
	return blobAEAD(secret).Seal(out, out[1:], pt, blobAD(version, secret))
}

// plain is iv's blob plaintext, padded.
func plain(iv Invite) []byte {
	pt := iv.appendBlobPlain(nil)
	return append(pt, make([]byte, maxBlobPlain-len(pt))...)
}

func TestOpenErrors(t *testing.T) {
	iv := basic
	blob, err := SealBlob(iv)
	if err != nil {
		t.Fatal(err)
	}
	other := with(func(o *Invite) { o.Secret[0] ^= 1 })
	seal := func(iv Invite) []byte {
		t.Helper()
		b, err := SealBlob(iv)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	flipped := func(i int) []byte {
		b := bytes.Clone(blob)
		b[i] ^= 0x80
		return b
	}
	wrongAD := func() []byte {
		// The right key, but sealed for another ID.
		out := append([]byte{blobVersion}, make([]byte, blobNonceLen)...)
		return blobAEAD(iv.Secret).Seal(out, out[1:], plain(iv), append([]byte{blobVersion}, make([]byte, 16)...))
	}
	for _, tc := range []struct {
		name string
		blob []byte
		want string // in the error text
	}{
		{"wrong secret", seal(other), "does not open"},
		{"flipped version", flipped(0), "blob version 129"},
		{"flipped nonce", flipped(1), "does not open"},
		{"flipped ciphertext", flipped(100), "does not open"},
		{"flipped tag", flipped(len(blob) - 1), "does not open"},
		{"truncated", blob[:len(blob)-1], "does not open"},
		{"too long", append(bytes.Clone(blob), 0), "bytes, but a blob has"},
		{"empty", nil, "bytes, but a blob has"},
		{"sealed for another ID", wrongAD(), "does not open"},
		{"expiry differs", seal(with(func(iv *Invite) { iv.Expires = iv.Expires.Add(time.Second) })), "expires"},
		{"server not listed", seal(with(func(iv *Invite) { iv.Servers = []Server{srvB} })), "does not list"},
		{"server on other ports", seal(with(func(iv *Invite) { iv.Servers[0].Port2 = 9 })), "does not list"},
		{"older blob version", sealPlain(iv.Secret, 0, plain(iv)), "blob version 0"},
		{"padding not zero", sealPlain(iv.Secret, blobVersion, func() []byte { p := plain(iv); p[len(p)-1] = 1; return p }()), "malformed"},
		{"truncated plaintext", sealPlain(iv.Secret, blobVersion, iv.appendBlobPlain(nil)[:len(iv.appendBlobPlain(nil))-1]), "malformed"},
		{"unknown flags", sealPlain(iv.Secret, blobVersion, func() []byte { p := plain(iv); p[nodekey.Len+4+1+len(iv.Name)] |= 4; return p }()), "malformed"},
		{"no inviter", sealPlain(iv.Secret, blobVersion, func() []byte { p := plain(iv); clear(p[:nodekey.Len]); return p }()), "malformed"},
		{"control character in name", sealPlain(iv.Secret, blobVersion, func() []byte { p := plain(iv); p[nodekey.Len+4+1] = 0x1b; return p }()), "malformed"},
		{"default port spelled out", sealPlain(iv.Secret, blobVersion, func() []byte {
			p := iv.appendBlobPlain(nil)
			at := nodekey.Len + 4 + 1 + len(iv.Name) + 1
			p[at] |= flagPort
			end := len(p) - nodekey.Len
			p = append(p[:end:end], append([]byte{0x0d, 0x96}, p[end:]...)...)
			return append(p, make([]byte, maxBlobPlain-len(p))...)
		}()), "canonical"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			short, err := Parse(iv.ShortCode())
			if err != nil {
				t.Fatal(err)
			}
			before := short
			err = short.Open(tc.blob)
			if !errors.Is(err, ErrBlob) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open = %v, want ErrBlob saying %q", err, tc.want)
			}
			if !reflect.DeepEqual(short, before) {
				t.Errorf("a failed Open changed the invite to %+v", short)
			}
		})
	}
}

// Every bit of a blob is covered: whichever is flipped, Open fails.
func TestOpenEveryBitFlip(t *testing.T) {
	blob, err := SealBlob(ipOnly)
	if err != nil {
		t.Fatal(err)
	}
	short, err := Parse(ipOnly.ShortCode())
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(blob) * 8 {
		b := bytes.Clone(blob)
		b[i/8] ^= 1 << (i % 8)
		iv := short
		if err := iv.Open(b); !errors.Is(err, ErrBlob) {
			t.Fatalf("Open with bit %d flipped = %v, want ErrBlob", i, err)
		}
	}
}

// A blob of another version, even one that opens, is not this code's: the
// server that returned it must not be able to make the joiner believe it
// needs an update.
func TestOpenNewerBlob(t *testing.T) {
	short, err := Parse(basic.ShortCode())
	if err != nil {
		t.Fatal(err)
	}
	err = short.Open(sealPlain(basic.Secret, blobVersion+1, plain(basic)))
	if !errors.Is(err, ErrBlob) || errors.Is(err, ErrVersion) {
		t.Errorf("Open(newer blob) = %v, want ErrBlob and not ErrVersion", err)
	}
}

// The inviter may name any server that stored the blob in the code: the
// blob lists them all, in the order it was sealed with.
func TestOpenCodeNamesAnyServer(t *testing.T) {
	iv := with(func(iv *Invite) { iv.Servers = []Server{srvA, srv4, srv6} })
	blob, err := SealBlob(iv)
	if err != nil {
		t.Fatal(err)
	}
	for i := range iv.Servers {
		named := with(func(n *Invite) { n.Servers = []Server{iv.Servers[i]} })
		short, err := Parse(named.ShortCode())
		if err != nil {
			t.Fatal(err)
		}
		if err := short.Open(blob); err != nil || !same(short, iv) {
			t.Errorf("code naming server %d: Open = %v, %+v", i+1, err, short)
		}
	}
}

// Known answers, computed separately (Python hmac/hashlib HKDF-SHA256 with
// no salt), and a blob laid out by hand and sealed with that key: this
// pins the derivations and the layout, which every Pi must agree on.
func TestBlobKnownAnswers(t *testing.T) {
	secret := basic.Secret
	const (
		wantID  = "7e158421df3c7a8aa11faa224a8ac98e"
		wantKey = "ce526b40b52b091ca4cbb0841260c1aae833d0325356e1cdf91fc3143922e706"
	)
	id := BlobID(secret)
	if got := hex.EncodeToString(id[:]); got != wantID {
		t.Errorf("BlobID = %s, want %s", got, wantID)
	}
	k, _ := hex.DecodeString(wantKey)
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		t.Fatal(err)
	}
	var pt []byte
	inviter := key(1)
	pt = append(pt, inviter[:]...)
	pt = binary.BigEndian.AppendUint32(pt, 1_800_000_000)
	pt = append(pt, 5, 'a', 'l', 'i', 'c', 'e')
	pt = append(pt, 0)                    // one server
	pt = append(pt, 1, 198, 51, 100, 7)   // IPv4, default ports
	pt = append(pt, srvIP.Key[:]...)      // its key
	pt = append(pt, make([]byte, 100)...) // padding, shorter than SealBlob's
	blob := append([]byte{1}, bytes.Repeat([]byte{0x5a}, 24)...)
	blob = aead.Seal(blob, blob[1:], pt, append([]byte{1}, id[:]...))
	short, err := Parse(ipOnly.ShortCode())
	if err != nil {
		t.Fatal(err)
	}
	if err := short.Open(blob); err != nil || !same(short, ipOnly) {
		t.Errorf("Open(hand-made blob) = %v, %+v; want %+v", err, short, ipOnly)
	}
}

// The ID a server sees is not the key: each has its own label, and both
// change with every bit of the secret.
func TestBlobIDIndependent(t *testing.T) {
	if blobIDLabel == blobKeyLabel || blobIDLabel == proofLabel || blobKeyLabel == proofLabel {
		t.Fatalf("labels are not distinct")
	}
	secret := basic.Secret
	id := BlobID(secret)
	k := derive(secret, blobKeyLabel, chacha20poly1305.KeySize)
	if bytes.Contains(k, id[:8]) || bytes.Contains(id[:], secret[:8]) || bytes.Contains(k, secret[:8]) {
		t.Errorf("BlobID %x, key %x and secret %x overlap", id, k, secret)
	}
	seen := map[[16]byte]bool{id: true}
	for i := range 128 {
		s := secret
		s[i/8] ^= 1 << (i % 8)
		o := BlobID(s)
		if seen[o] {
			t.Fatalf("BlobID repeats with bit %d of the secret flipped", i)
		}
		seen[o] = true
	}
	if BlobID(secret) != id {
		t.Errorf("BlobID is not deterministic")
	}
}

func TestBlobSize(t *testing.T) {
	name32 := strings.Repeat("n", MaxNameLen)
	ipv6Ports := func(n int) []Server {
		var ss []Server
		for i := range n {
			ss = append(ss, Server{Host: "2001:db8::" + string(rune('1'+i)), Port: 443, Port2: 8443, Key: key(byte(i))})
		}
		return ss
	}
	names := func(n, chars int) []Server {
		var ss []Server
		for i := range n {
			h := []byte(hostLen(chars))
			h[0] = byte('a' + i)
			ss = append(ss, Server{Host: string(h), Port: DefaultPort, Port2: DefaultPort + 1, Key: key(byte(i))})
		}
		return ss
	}
	for _, tc := range []struct {
		name    string
		servers []Server
		fits    bool
	}{
		{"one IPv4", []Server{srvIP}, true},
		{"four IPv4 and IPv6", []Server{srvIP, srv4, srv6, srvIP}, true},
		{"four IPv6, default ports", func() []Server {
			ss := ipv6Ports(4)
			for i := range ss {
				ss[i].Port, ss[i].Port2 = DefaultPort, DefaultPort+1
			}
			return ss
		}(), true},
		{"four names of 27", names(4, 27), true},
		{"two names of 105", names(2, 105), true},
		{"one name of 253", names(1, 253), true},
		{"four names of 28", names(4, 28), false},
		{"two names of 106", names(2, 106), false},
		{"four names of 253", names(4, 253), false},
		{"four IPv6, both ports", ipv6Ports(4), false},
	} {
		iv := with(func(iv *Invite) { iv.Servers, iv.Name = tc.servers, name32 })
		if err := iv.Validate(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		blob, err := SealBlob(iv)
		if !tc.fits {
			if err == nil {
				t.Errorf("%s: SealBlob = %d bytes, want an error", tc.name, len(blob))
			}
			continue
		}
		if err != nil || len(blob) != MaxBlobLen {
			t.Errorf("%s: SealBlob = %d bytes, %v; want %d", tc.name, len(blob), err, MaxBlobLen)
		}
	}
	// A random nonce: the same invite never seals to the same bytes.
	a, _ := SealBlob(basic)
	b, _ := SealBlob(basic)
	if bytes.Equal(a, b) || bytes.Equal(a[1:1+blobNonceLen], b[1:1+blobNonceLen]) {
		t.Errorf("two blobs of one invite are equal or share a nonce")
	}
}

// The longest long code is far below what Parse reads, with room for
// white space around it; anything longer is refused before decoding.
func TestParseLength(t *testing.T) {
	longest := with(func(iv *Invite) {
		iv.Name = strings.Repeat("é", 16)
		iv.Servers = nil
		for i := range MaxServers {
			h := []byte(hostLen(253))
			h[0] = byte('a' + i)
			iv.Servers = append(iv.Servers, Server{Host: string(h), Port: 1, Port2: 2, Key: key(byte(i))})
		}
	})
	code := longest.Code()
	t.Logf("longest code: %d characters with dashes", len(code))
	if 2*len(code) > maxCodeChars {
		t.Errorf("longest code has %d characters, too close to maxCodeChars %d", len(code), maxCodeChars)
	}
	if _, err := Parse(code); err != nil {
		t.Errorf("Parse(longest code) = %v", err)
	}
	if _, err := Parse(strings.Repeat(" ", maxCodeChars) + code); !errors.Is(err, ErrMalformed) {
		t.Errorf("Parse(%d characters) = %v, want ErrMalformed", maxCodeChars+len(code), err)
	}
}
