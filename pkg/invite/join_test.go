package invite

import (
	"bytes"
	"errors"
	"testing"

	"github.com/peerline/peerline/pkg/nodekey"
)

func TestJoinBox(t *testing.T) {
	secret := [16]byte{1, 2, 3}
	joiner := nodekey.Key{9, 9}
	hello := []byte("hello bytes")
	box, err := SealJoin(secret, joiner, hello)
	if err != nil {
		t.Fatal(err)
	}
	k, h, err := OpenJoin(secret, box)
	if err != nil || k != joiner || !bytes.Equal(h, hello) {
		t.Fatalf("OpenJoin = %v, %q, %v", k, h, err)
	}
	other := secret
	other[0] ^= 1
	for _, tt := range []struct {
		name   string
		secret [16]byte
		box    []byte
	}{
		{"another invite's secret", other, box},
		{"flipped byte", secret, func() []byte { b := bytes.Clone(box); b[len(b)/2] ^= 1; return b }()},
		{"truncated", secret, box[:len(box)-1]},
		{"unknown version", secret, func() []byte { b := bytes.Clone(box); b[0] = 2; return b }()},
		{"empty", secret, nil},
	} {
		if _, _, err := OpenJoin(tt.secret, tt.box); !errors.Is(err, ErrJoinBox) {
			t.Errorf("%s: OpenJoin err = %v, want ErrJoinBox", tt.name, err)
		}
	}
	if _, err := SealJoin(secret, joiner, make([]byte, MaxJoinBox)); err == nil {
		t.Error("an oversized hello was sealed")
	}
	if a, b := BlobID(secret), derive(secret, joinKeyLabel, 16); bytes.Equal(a[:], b) {
		t.Error("the join key starts like the blob ID the servers see")
	}
}

// TestJoinBoxSameJoiner: the same joiner fetching the same invite sends
// the same box (the server answers a box it answered before); anything
// else that differs gives another nonce, which is what the server tells
// fetches apart by.
func TestJoinBoxSameJoiner(t *testing.T) {
	secret := [16]byte{1, 2, 3}
	joiner := nodekey.Key{9, 9}
	seal := func(s [16]byte, k nodekey.Key, hello string) []byte {
		t.Helper()
		b, err := SealJoin(s, k, []byte(hello))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	nonce := func(b []byte) []byte { return b[1 : 1+24] }
	box := seal(secret, joiner, "hello")
	if again := seal(secret, joiner, "hello"); !bytes.Equal(again, box) {
		t.Error("the same joiner's second box for one invite differs")
	}
	for name, other := range map[string][]byte{
		"another joiner": seal(secret, nodekey.Key{8}, "hello"),
		"another hello":  seal(secret, joiner, "hellO"),
		"another invite": seal([16]byte{1, 2, 4}, joiner, "hello"),
	} {
		if bytes.Equal(nonce(other), nonce(box)) {
			t.Errorf("%s: same nonce", name)
		}
	}
}

// FuzzOpenJoin: no input opens without the secret, and none panics.
func FuzzOpenJoin(f *testing.F) {
	secret := [16]byte{7}
	// A fixed nonce: every fuzz worker must seal the same seed.
	box, _ := sealJoin(secret, nodekey.Key{1}, []byte("h"), [24]byte{5})
	f.Add(box)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, _, err := OpenJoin(secret, b); err == nil && !bytes.Equal(b, box) {
			t.Fatalf("a box not sealed with the secret opened: %x", b)
		}
	})
}
