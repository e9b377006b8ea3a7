package firewall

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// genReply builds the kernel's NFT_MSG_NEWGEN answer carrying gen.
func genReply(gen uint32) []byte {
	b := make([]byte, nlmsgHeaderLen+nfgenmsgLen+8)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], msgTypeNewGen)
	a := b[nlmsgHeaderLen+nfgenmsgLen:]
	binary.NativeEndian.PutUint16(a[0:], 8)
	binary.NativeEndian.PutUint16(a[2:], unix.NFTA_GEN_ID)
	binary.BigEndian.PutUint32(a[4:], gen)
	return b
}

func errorReply(errno unix.Errno) []byte {
	b := make([]byte, nlmsgHeaderLen+4)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], unix.NLMSG_ERROR)
	binary.NativeEndian.PutUint32(b[nlmsgHeaderLen:], uint32(-int32(errno)))
	return b
}

func TestParseGenReply(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want uint32
		err  error
	}{
		{"generation", genReply(0x01020304), 0x01020304, nil},
		{"refused", errorReply(unix.EPERM), 0, unix.EPERM},
		{"empty", nil, 0, errNoGen},
		{"truncated", genReply(7)[:20], 0, errNoGen},
		{"length past the end", func() []byte { b := genReply(7); b[0] = 200; return b }(), 0, errNoGen},
	}
	for _, tt := range tests {
		got, err := parseGenReply(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("%s: parseGenReply = %d, %v, want %d, %v", tt.name, got, err, tt.want, tt.err)
		}
	}
	if r := getGenRequest(1); len(r) != 20 || binary.NativeEndian.Uint16(r[4:]) != msgTypeGetGen {
		t.Errorf("getGenRequest(1) = %x, want a 20-byte NFT_MSG_GETGEN", r)
	}
}

// FuzzParseGenReply: whatever the bytes, no panic, and a generation is
// only reported from an answer that holds one.
func FuzzParseGenReply(f *testing.F) {
	f.Add(genReply(42))
	f.Add(errorReply(unix.EPERM))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if g, err := parseGenReply(b); err == nil && len(b) < nlmsgHeaderLen+nfgenmsgLen+8 {
			t.Fatalf("parseGenReply(%x) = %d from a reply too short to hold one", b, g)
		}
	})
}
