package invite

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzParse: no panic; whatever parses writes back to a code of the same
// version that parses to the same invite, and to the same bytes (a code
// has one encoding).
func FuzzParse(f *testing.F) {
	for _, tc := range roundTrips {
		f.Add(tc.iv.Code())
		f.Add(strings.ToLower(tc.iv.URI()))
	}
	for _, tc := range shortRoundTrips {
		f.Add(tc.iv.ShortCode())
		f.Add(strings.ToLower(tc.iv.ShortURI()))
	}
	f.Add(raw(body(basic)[:60]))
	f.Add(raw(shortBody(basic)[:30]))
	f.Add("0406P-JEJ00-0G40R")
	f.Fuzz(func(t *testing.T, s string) {
		iv, err := Parse(s)
		if err != nil {
			return
		}
		code := ""
		if iv.Short() {
			code = iv.ShortCode()
		} else {
			code = iv.Code()
		}
		again, err := Parse(code)
		if err != nil || !same(again, iv) || again.Short() != iv.Short() {
			t.Fatalf("Parse(%q) = %+v, but its code %s parses to %+v, %v", s, iv, code, again, err)
		}
		in, _ := decode32(strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), URIPrefix))
		out, _ := decode32(code)
		if !bytes.Equal(in, out) {
			t.Fatalf("Parse(%q) accepted a second encoding of %s", s, code)
		}
	})
}

// FuzzParseBody is FuzzParse behind a correct CRC: random text almost
// never gets past the checksum, so this is what explores the parser of the
// fields themselves.
func FuzzParseBody(f *testing.F) {
	for _, tc := range roundTrips {
		f.Add(body(tc.iv))
	}
	for _, tc := range shortRoundTrips {
		f.Add(shortBody(tc.iv))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		iv, err := Parse(raw(b))
		if err != nil {
			return
		}
		var again []byte
		if iv.Short() {
			again = shortBody(iv)
		} else {
			again = body(iv)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("body %x parses to %+v, which encodes to %x", b, iv, again)
		}
	})
}

// FuzzOpen: blobs from a server are untrusted. No panic, and none opens
// but one sealed with the code's secret: the only such blobs here are the
// seeds (sealed with a fixed nonce, so that every fuzzing process has the
// same), and the fuzzer cannot forge more of them.
func FuzzOpen(f *testing.F) {
	short, err := Parse(basic.ShortCode())
	if err != nil {
		f.Fatal(err)
	}
	var sealed [][]byte
	for _, iv := range []Invite{basic, with(func(iv *Invite) { iv.Servers = []Server{srvA, srv4, srv6, srvB} })} {
		blob := sealPlain(iv.Secret, blobVersion, plain(iv))
		sealed = append(sealed, blob)
		f.Add(blob)
		f.Add(blob[:len(blob)-1])
	}
	other, _ := SealBlob(with(func(iv *Invite) { iv.Secret[15]++ }))
	f.Add(other)
	f.Add([]byte{blobVersion})
	f.Fuzz(func(t *testing.T, blob []byte) {
		iv := short
		err := iv.Open(blob)
		if err != nil {
			if !errors.Is(err, ErrBlob) || !reflect.DeepEqual(iv, short) {
				t.Fatalf("Open(%x) = %v and left %+v", blob, err, iv)
			}
			return
		}
		for _, s := range sealed {
			if bytes.Equal(s, blob) {
				return
			}
		}
		t.Fatalf("Open accepted a blob nobody sealed: %x gives %+v", blob, iv)
	})
}

// FuzzOpenPlain is FuzzOpen behind a correct tag, as FuzzParseBody is
// FuzzParse behind a correct CRC: it explores the parser of what a blob
// holds, which only the secret's holder can reach. Whatever opens was
// written by appendBlobPlain, names the code's server and expiry, and is
// a complete invite.
func FuzzOpenPlain(f *testing.F) {
	short, err := Parse(basic.ShortCode())
	if err != nil {
		f.Fatal(err)
	}
	for _, tc := range shortRoundTrips {
		f.Add(plain(tc.iv))
		f.Add(tc.iv.appendBlobPlain(nil))
	}
	f.Fuzz(func(t *testing.T, pt []byte) {
		iv := short
		if err := iv.Open(sealPlain(basic.Secret, blobVersion, pt)); err != nil {
			if !errors.Is(err, ErrBlob) {
				t.Fatalf("Open = %v, want ErrBlob", err)
			}
			return
		}
		if err := iv.Validate(); err != nil || iv.Short() || !iv.Expires.Equal(short.Expires) || iv.Secret != short.Secret {
			t.Fatalf("plaintext %x opens to %+v (%v)", pt, iv, err)
		}
		again := iv.appendBlobPlain(nil)
		if len(again) > len(pt) || !bytes.Equal(again, pt[:len(again)]) || strings.Trim(string(pt[len(again):]), "\x00") != "" {
			t.Fatalf("plaintext %x opens to %+v, which seals as %x", pt, iv, again)
		}
	})
}

// FuzzParseHello: no panic, bounded, every error is ErrHello or ErrVersion,
// whatever parses appends to exactly the bytes it came from, and an Ack
// comes only in version 2, never with a proof or a confirmation, and
// labels only in version 3, alone, each valid and for a line announced.
func FuzzParseHello(f *testing.F) {
	for _, tc := range hellos {
		b, _ := AppendHello(nil, tc.h)
		f.Add(b)
	}
	f.Add([]byte{1, 1, 0, 0})
	f.Add([]byte{2, 4, 0, 0})
	f.Add(append([]byte{2, 0, 0, 0}, make([]byte, 32)...))
	f.Add([]byte{3, 0, 0, 2, 1, 2, 2, 1, 1, 'a', 2, 1, 'b'})
	f.Add(append([]byte{2, 5, 0, 0}, make([]byte, 64)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHello(b)
		if err != nil {
			if !errors.Is(err, ErrHello) && !errors.Is(err, ErrVersion) {
				t.Fatalf("ParseHello(%x) = %v, neither ErrHello nor ErrVersion", b, err)
			}
			return
		}
		if len(b) > MaxHelloLen {
			t.Fatalf("ParseHello accepted %d bytes, more than MaxHelloLen", len(b))
		}
		if (h.Ack != nil) != (b[0] == 2) || h.Ack != nil && (h.Proof != nil || h.Confirm) {
			t.Fatalf("ParseHello(%x) = %+v: an ack out of place", b, h)
		}
		if (h.Labels != nil) != (b[0] == 3) || h.Labels != nil && (h.Proof != nil || h.Ack != nil || h.Committed || h.Confirm) {
			t.Fatalf("ParseHello(%x) = %+v: labels out of place", b, h)
		}
		for l, label := range h.Labels {
			if !slices.Contains(h.Lines, l) || ValidLabel(label) != nil {
				t.Fatalf("ParseHello(%x) = %+v: a bad label for line %d", b, h, l)
			}
		}
		out, err := AppendHello(nil, h)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("ParseHello(%x) = %+v, which appends to %x, %v", b, h, out, err)
		}
	})
}
