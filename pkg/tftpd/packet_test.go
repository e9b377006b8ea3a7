package tftpd

import (
	"bytes"
	"maps"
	"testing"
)

func rrq(op byte, fields ...string) []byte {
	b := []byte{0, op}
	for _, f := range fields {
		b = append(append(b, f...), 0)
	}
	return b
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    Request
		wantErr bool
	}{
		{"octet", rrq(1, "cfg000b82123456.xml", "octet"), Request{Filename: "cfg000b82123456.xml", Mode: "octet"}, false},
		{"netascii upper case", rrq(1, "a.cfg", "NetASCII"), Request{Filename: "a.cfg", Mode: "netascii"}, false},
		{"options", rrq(1, "f", "octet", "BLKSIZE", "1428", "tsize", "0"), Request{Filename: "f", Mode: "octet", Options: map[string]string{"blksize": "1428", "tsize": "0"}}, false},
		{"write", rrq(2, "f", "octet"), Request{Write: true, Filename: "f", Mode: "octet"}, false},
		{"mail mode", rrq(1, "f", "mail"), Request{}, true},
		{"empty filename", rrq(1, "", "octet"), Request{}, true},
		{"control char in filename", rrq(1, "a\nb", "octet"), Request{}, true},
		{"no terminator", rrq(1, "f", "octet")[:8], Request{}, true},
		{"no mode", rrq(1, "f"), Request{}, true},
		{"option without value", rrq(1, "f", "octet", "blksize"), Request{}, true},
		{"duplicate option", rrq(1, "f", "octet", "tsize", "0", "TSIZE", "0"), Request{}, true},
		{"data packet", []byte{0, 3, 0, 1, 'x'}, Request{}, true},
		{"ack packet", []byte{0, 4, 0, 1}, Request{}, true},
		{"one byte", []byte{0}, Request{}, true},
		{"too long", rrq(1, string(bytes.Repeat([]byte{'a'}, 600)), "octet"), Request{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseRequest(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && (got.Write != tt.want.Write || got.Filename != tt.want.Filename || got.Mode != tt.want.Mode || !maps.Equal(got.Options, tt.want.Options)) {
				t.Errorf("ParseRequest(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name string
		in   map[string]string
		want options
		ack  []string
	}{
		{"none", nil, options{blksize: 512}, nil},
		{"blksize", map[string]string{"blksize": "1024"}, options{blksize: 1024}, []string{"blksize", "1024"}},
		{"blksize capped", map[string]string{"blksize": "65464"}, options{blksize: maxBlksize}, []string{"blksize", "1468"}},
		{"blksize too small ignored", map[string]string{"blksize": "4"}, options{blksize: 512}, nil},
		{"timeout", map[string]string{"timeout": "3"}, options{blksize: 512, timeout: 3}, []string{"timeout", "3"}},
		{"timeout out of range", map[string]string{"timeout": "0"}, options{blksize: 512}, nil},
		{"tsize", map[string]string{"tsize": "0"}, options{blksize: 512, tsize: true}, nil},
		{"unknown", map[string]string{"windowsize": "8"}, options{blksize: 512}, nil},
	}
	for _, tt := range tests {
		got, ack := negotiate(tt.in)
		if got != tt.want || !equalStrings(ack, tt.ack) {
			t.Errorf("%s: negotiate(%v) = %+v %q, want %+v %q", tt.name, tt.in, got, ack, tt.want, tt.ack)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestToNetascii(t *testing.T) {
	if got, want := toNetascii([]byte("a\nb\rc\r\n")), []byte("a\r\nb\r\x00c\r\x00\r\n"); !bytes.Equal(got, want) {
		t.Errorf("toNetascii = %q, want %q", got, want)
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add(rrq(1, "cfg000b82123456.xml", "octet"))
	f.Add(rrq(1, "f", "netascii", "blksize", "1428", "tsize", "0", "timeout", "2"))
	f.Add(rrq(2, "f", "octet"))
	f.Add([]byte{0, 4, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		if r.Filename == "" || !printable(r.Filename) || (r.Mode != "octet" && r.Mode != "netascii") {
			t.Fatalf("accepted %q as %+v", b, r)
		}
		// Re-encoding what was parsed gives a request that parses the same.
		fields := []string{r.Filename, r.Mode}
		for k, v := range r.Options {
			fields = append(fields, k, v)
		}
		op := byte(1)
		if r.Write {
			op = 2
		}
		r2, err := ParseRequest(rrq(op, fields...))
		if err != nil || r2.Filename != r.Filename || r2.Mode != r.Mode || !maps.Equal(r2.Options, r.Options) {
			t.Fatalf("round trip of %+v = %+v, %v", r, r2, err)
		}
		o, ack := negotiate(r.Options)
		if o.blksize < minBlksize || o.blksize > maxBlksize || len(ack)%2 != 0 {
			t.Fatalf("negotiate(%v) = %+v %q", r.Options, o, ack)
		}
	})
}
