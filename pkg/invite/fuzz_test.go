package invite

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse: no panic; whatever parses writes back to a code that parses to
// the same invite, and to the same bytes (a code has one encoding).
func FuzzParse(f *testing.F) {
	for _, tc := range roundTrips {
		f.Add(tc.iv.Code())
		f.Add(strings.ToLower(tc.iv.URI()))
	}
	f.Add(raw(body(basic)[:60]))
	f.Add("0406P-JEJ00-0G40R")
	f.Fuzz(func(t *testing.T, s string) {
		iv, err := Parse(s)
		if err != nil {
			return
		}
		code := iv.Code()
		again, err := Parse(code)
		if err != nil || !same(again, iv) {
			t.Fatalf("Parse(%q) = %+v, but its Code %s parses to %+v, %v", s, iv, code, again, err)
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
	f.Fuzz(func(t *testing.T, b []byte) {
		iv, err := Parse(raw(b))
		if err != nil {
			return
		}
		if again := body(iv); !bytes.Equal(again, b) {
			t.Fatalf("body %x parses to %+v, which encodes to %x", b, iv, again)
		}
	})
}

// FuzzParseHello: no panic, bounded, and whatever parses appends to exactly
// the bytes it came from.
func FuzzParseHello(f *testing.F) {
	for _, tc := range hellos {
		b, _ := AppendHello(nil, tc.h)
		f.Add(b)
	}
	f.Add([]byte{1, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHello(b)
		if err != nil {
			return
		}
		out, err := AppendHello(nil, h)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("ParseHello(%x) = %+v, which appends to %x, %v", b, h, out, err)
		}
	})
}
