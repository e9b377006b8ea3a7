package sipauth

import (
	"strings"
	"testing"
)

func TestParseAuthorization(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Credentials
		bad  bool
	}{
		{in: `Digest username="1", realm="peerline", nonce="abc", uri="sip:10.0.1.2", response="0123", algorithm=SHA-256, cnonce="xyz", nc=00000001, qop=auth`,
			want: Credentials{Username: "1", Realm: "peerline", Nonce: "abc", URI: "sip:10.0.1.2", Response: "0123", Algorithm: "SHA-256", CNonce: "xyz", NC: "00000001", QOP: "auth"}},
		// Grandstream style: no spaces, quoted qop, algorithm quoted.
		{in: `Digest username="2",realm="peerline",nonce="n",uri="sip:10.0.2.2",response="ff",algorithm="MD5",qop="auth",nc=00000002,cnonce="c"`,
			want: Credentials{Username: "2", Realm: "peerline", Nonce: "n", URI: "sip:10.0.2.2", Response: "ff", Algorithm: "MD5", CNonce: "c", NC: "00000002", QOP: "auth"}},
		// RFC 2069 form, lower-case scheme, unknown parameter ignored.
		{in: "digest  username=\"1\" ,\trealm=\"r\", nonce=\"n\", uri=\"sip:a\", response=\"00\", userhash=false",
			want: Credentials{Username: "1", Realm: "r", Nonce: "n", URI: "sip:a", Response: "00"}},
		{in: `Basic dXNlcjpwYXNz`, bad: true},
		{in: `Digest`, bad: true},
		{in: `Digest username="1", username="2", nonce="n", uri="u", response="r"`, bad: true},
		{in: `Digest username="1", nonce="n", uri="u"`, bad: true},              // no response
		{in: `Digest username="1, nonce="n", uri="u", response="r"`, bad: true}, // unbalanced quote
		{in: `Digest username="a\"b", nonce="n", uri="u", response="r"`, bad: true},
		{in: `Digest username="1" nonce="n"`, bad: true}, // no comma
		{in: `Digest =x`, bad: true},
		{in: `Digest username="1", nonce="n", uri="u", response=` + strings.Repeat("a", 5000), bad: true},
	} {
		got, err := ParseAuthorization(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: accepted as %+v", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q:\n got %+v, %v\nwant %+v", tc.in, got, err, tc.want)
		}
	}
}

// Whatever a device on the phone port sends, the parser returns quickly,
// every field it returns lies inside the input, and a success has the
// fields a check needs.
func FuzzParseAuthorization(f *testing.F) {
	f.Add(`Digest username="1", realm="peerline", nonce="abc", uri="sip:10.0.1.2", response="0123", algorithm=SHA-256, cnonce="xyz", nc=00000001, qop=auth`)
	f.Add(`Digest username="2",realm="peerline",nonce="n",uri="sip:10.0.2.2",response="ff",algorithm="MD5"`)
	f.Add(`Digest username="1, nonce="n"`)
	f.Add(`digest a=b,c="d",`)
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseAuthorization(in)
		if err != nil {
			return
		}
		if c.Username == "" || c.Nonce == "" || c.URI == "" || c.Response == "" {
			t.Fatalf("accepted without a required field: %+v", c)
		}
		for _, f := range []string{c.Username, c.Realm, c.Nonce, c.URI, c.Response, c.Algorithm, c.CNonce, c.NC, c.QOP, c.Opaque} {
			if !strings.Contains(in, f) || strings.ContainsAny(f, "\"\\") {
				t.Fatalf("field %q not taken from the input or holds a quote", f)
			}
		}
	})
}
