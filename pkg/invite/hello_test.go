package invite

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestProof(t *testing.T) {
	secret := basic.Secret
	inviter, joiner := key(1), key(2)
	p := Proof(secret, inviter, joiner)

	// Spelled out independently: HMAC-SHA256(secret, label || inviter || joiner).
	m := hmac.New(sha256.New, secret[:])
	m.Write([]byte("peerline invite proof v1"))
	m.Write(inviter[:])
	m.Write(joiner[:])
	if !bytes.Equal(p[:], m.Sum(nil)) {
		t.Fatalf("Proof = %x, want HMAC-SHA256(secret, label|inviter|joiner) = %x", p, m.Sum(nil))
	}
	if !VerifyProof(secret, inviter, joiner, p) {
		t.Fatal("VerifyProof refuses a good proof")
	}
	other := secret
	other[15] ^= 1
	for _, tc := range []struct {
		name            string
		secret          [16]byte
		inviter, joiner [32]byte
	}{
		{"other secret", other, inviter, joiner},
		{"other inviter", secret, key(3), joiner},
		{"other joiner", secret, inviter, key(3)},
		{"roles swapped", secret, joiner, inviter},
	} {
		if VerifyProof(tc.secret, tc.inviter, tc.joiner, p) {
			t.Errorf("%s: VerifyProof accepts the proof", tc.name)
		}
	}
}

// TestCommitAck: the acknowledgement spelled out independently, and
// different for every proof and from the proof itself.
func TestCommitAck(t *testing.T) {
	p := Proof(basic.Secret, key(1), key(2))
	m := hmac.New(sha256.New, p[:])
	m.Write([]byte("peerline invite committed v1"))
	a := CommitAck(p)
	if !bytes.Equal(a[:], m.Sum(nil)) {
		t.Fatalf("CommitAck = %x, want HMAC-SHA256(proof, label) = %x", a, m.Sum(nil))
	}
	if a == p {
		t.Error("CommitAck is the proof")
	}
	other := basic.Secret
	other[0] ^= 1
	if CommitAck(Proof(other, key(1), key(2))) == a || CommitAck(Proof(basic.Secret, key(1), key(3))) == a {
		t.Error("two pairings have the same acknowledgement")
	}
}

// TestAcceptAck: the acceptance spelled out independently, and
// different for every proof, from the proof and from the commit's.
func TestAcceptAck(t *testing.T) {
	p := Proof(basic.Secret, key(1), key(2))
	m := hmac.New(sha256.New, p[:])
	m.Write([]byte("peerline invite accepted v1"))
	a := AcceptAck(p)
	if !bytes.Equal(a[:], m.Sum(nil)) {
		t.Fatalf("AcceptAck = %x, want HMAC-SHA256(proof, label) = %x", a, m.Sum(nil))
	}
	if a == p || a == CommitAck(p) {
		t.Error("AcceptAck is the proof or the commit's acknowledgement")
	}
	other := basic.Secret
	other[0] ^= 1
	if AcceptAck(Proof(other, key(1), key(2))) == a || AcceptAck(Proof(basic.Secret, key(1), key(3))) == a {
		t.Error("two pairings have the same acceptance")
	}
}

var allLines = []int{16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}

// allLabels labels each of allLines with MaxLabelLen bytes.
func allLabels() map[int]string {
	m := map[int]string{}
	for _, l := range allLines {
		m[l] = strings.Repeat("é", MaxLabelLen/2) + "x"
	}
	return m
}

var (
	proof = [32]byte{31: 7}
	ack   = [32]byte{0: 9, 31: 1}
)

var hellos = []struct {
	name string
	h    Hello
	wire []byte
}{
	{"answer", Hello{Name: "bob", Lines: []int{1, 2}},
		[]byte{1, 0, 3, 'b', 'o', 'b', 2, 1, 2}},
	{"join request", Hello{Name: "al", Lines: []int{254}, Proof: &proof},
		append([]byte{1, 1, 2, 'a', 'l', 1, 254}, proof[:]...)},
	{"nothing", Hello{}, []byte{1, 0, 0, 0}},
	{"confirmation", Hello{Name: "al", Proof: &proof, Confirm: true},
		append([]byte{1, 3, 2, 'a', 'l', 0}, proof[:]...)},
	// Version 1's Committed: an older peerline's, and the copy a newer
	// inviter sends for one.
	{"committed", Hello{Name: "bob", Committed: true}, []byte{1, 4, 3, 'b', 'o', 'b', 0}},
	// Version 2: Committed bound to its pairing.
	{"committed with ack", Hello{Name: "bob", Lines: []int{3}, Committed: true, Ack: &ack},
		append([]byte{2, 4, 3, 'b', 'o', 'b', 1, 3}, ack[:]...)},
	// Version 2: the answer to a join request bound to its invite.
	{"accepted with ack", Hello{Name: "bob", Lines: []int{3}, Ack: &ack},
		append([]byte{2, 0, 3, 'b', 'o', 'b', 1, 3}, ack[:]...)},
	// Version 3: an announcement, with the line labels.
	{"announcement", Hello{Name: "bob", Lines: []int{1, 2, 7}, Labels: map[int]string{7: "hall", 1: "kitchen"}},
		[]byte{3, 0, 3, 'b', 'o', 'b', 3, 1, 2, 7, 2, 1, 7, 'k', 'i', 't', 'c', 'h', 'e', 'n', 7, 4, 'h', 'a', 'l', 'l'}},
	{"announcement without labels", Hello{Name: "bob", Lines: []int{1}, Labels: map[int]string{}},
		[]byte{3, 0, 3, 'b', 'o', 'b', 1, 1, 0}},
	{"largest announcement", Hello{Name: strings.Repeat("ü", 16), Lines: allLines, Labels: allLabels()}, nil},
	{"largest committed", Hello{Name: strings.Repeat("ü", 16), Lines: []int{16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, Committed: true, Ack: &ack}, nil},
	{"largest", Hello{Name: strings.Repeat("ü", 16), Lines: []int{16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, Proof: &proof}, nil},
}

func TestHelloRoundTrip(t *testing.T) {
	for _, tc := range hellos {
		b, err := AppendHello([]byte("prefix"), tc.h)
		if err != nil {
			t.Fatalf("%s: AppendHello = %v", tc.name, err)
		}
		if !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatalf("%s: AppendHello dropped what was in b", tc.name)
		}
		b = b[len("prefix"):]
		if tc.wire != nil && !bytes.Equal(b, tc.wire) {
			t.Errorf("%s: AppendHello = %x, want %x", tc.name, b, tc.wire)
		}
		if len(b) > MaxHelloLen {
			t.Errorf("%s: %d bytes, more than MaxHelloLen %d", tc.name, len(b), MaxHelloLen)
		}
		got, err := ParseHello(b)
		if err != nil || !reflect.DeepEqual(got, tc.h) {
			t.Errorf("%s: ParseHello = %+v, %v; want %+v", tc.name, got, err, tc.h)
		}
		if got.Proof != nil || got.Ack != nil {
			b[len(b)-1] ^= 1
			if got.Proof != nil && *got.Proof != proof || got.Ack != nil && *got.Ack != ack {
				t.Errorf("%s: the parsed proof or ack changes with the input buffer", tc.name)
			}
		}
	}
}

func TestAppendHelloRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Hello
	}{
		{"long name", Hello{Name: strings.Repeat("x", 33)}},
		{"control character", Hello{Name: "a\x1b[2Jb"}},
		{"bad UTF-8", Hello{Name: "\xff"}},
		{"line 0", Hello{Lines: []int{0}}},
		{"line 255", Hello{Lines: []int{255}}},
		{"line twice", Hello{Lines: []int{3, 4, 3}}},
		{"17 lines", Hello{Lines: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}}},
		{"confirm without proof", Hello{Confirm: true}},
		{"committed with proof", Hello{Committed: true, Proof: &proof}},
		{"ack with a proof", Hello{Proof: &proof, Ack: &ack}},
		{"ack with a confirmation", Hello{Proof: &proof, Confirm: true, Ack: &ack}},
		{"labels with a proof", Hello{Lines: []int{1}, Proof: &proof, Labels: map[int]string{1: "a"}}},
		{"labels with committed", Hello{Lines: []int{1}, Committed: true, Labels: map[int]string{}}},
		{"labels with an ack", Hello{Lines: []int{1}, Ack: &ack, Labels: map[int]string{}}},
		{"label for a line not announced", Hello{Lines: []int{1}, Labels: map[int]string{2: "hall"}}},
		{"empty label", Hello{Lines: []int{1}, Labels: map[int]string{1: ""}}},
		{"label of 64 bytes", Hello{Lines: []int{1}, Labels: map[int]string{1: strings.Repeat("x", 64)}}},
		{"label with a newline", Hello{Lines: []int{1}, Labels: map[int]string{1: "a\nb"}}},
		{"label with escape", Hello{Lines: []int{1}, Labels: map[int]string{1: "\x1b[2J"}}},
		{"label with bidi override", Hello{Lines: []int{1}, Labels: map[int]string{1: "a\u202eb"}}},
		{"label not UTF-8", Hello{Lines: []int{1}, Labels: map[int]string{1: "\xff"}}},
	} {
		if b, err := AppendHello(nil, tc.h); err == nil {
			t.Errorf("%s: AppendHello = %x, want an error", tc.name, b)
		}
	}
}

func TestParseHelloErrors(t *testing.T) {
	good := hellos[1].wire
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrHello},
		{"newer version", edit(func(b []byte) []byte { b[0] = 4; return b }), ErrVersion},
		{"version 3 with a proof", edit(func(b []byte) []byte { b[0] = 3; return b }), ErrHello},
		{"version 3 committed", []byte{3, 4, 0, 0, 0}, ErrHello},
		{"version 3 without labels", []byte{3, 0, 0, 0}, ErrHello},
		{"version 3 label for no line", []byte{3, 0, 0, 0, 1, 1, 1, 'a'}, ErrHello},
		{"version 3 labels out of order", []byte{3, 0, 0, 2, 1, 2, 2, 2, 1, 'b', 1, 1, 'a'}, ErrHello},
		{"version 3 line labelled twice", []byte{3, 0, 0, 1, 1, 2, 1, 1, 'a', 1, 1, 'b'}, ErrHello},
		{"version 3 empty label", []byte{3, 0, 0, 1, 1, 1, 1, 0}, ErrHello},
		{"version 3 label of 64 bytes", append([]byte{3, 0, 0, 1, 1, 1, 1, 64}, make([]byte, 64)...), ErrHello},
		{"version 3 label with a control character", []byte{3, 0, 0, 1, 1, 1, 1, 1, '\r'}, ErrHello},
		{"version 3 17 labels", append([]byte{3, 0, 0, 0}, 17), ErrHello},
		{"version 3 truncated label", []byte{3, 0, 0, 1, 1, 1, 1, 5, 'a'}, ErrHello},
		{"version 3 trailing byte", []byte{3, 0, 0, 1, 1, 0, 0}, ErrHello},
		{"version 2 with a proof", edit(func(b []byte) []byte { b[0] = 2; return b }), ErrHello},
		{"version 2 confirming", append([]byte{2, 3, 0, 0}, proof[:]...), ErrHello},
		{"version 2 with a proof flag", append([]byte{2, 1, 0, 0}, ack[:]...), ErrHello},
		{"version 2 accepted without ack", []byte{2, 0, 0, 0}, ErrHello},
		{"version 2 without ack", []byte{2, 4, 0, 0}, ErrHello},
		{"version 2 truncated ack", append([]byte{2, 4, 0, 0}, ack[:31]...), ErrHello},
		{"version 2 trailing byte", append(append([]byte{2, 4, 0, 0}, ack[:]...), 0), ErrHello},
		{"version 2 unknown flag", append([]byte{2, 4 | 8, 0, 0}, ack[:]...), ErrHello},
		{"version 0", edit(func(b []byte) []byte { b[0] = 0; return b }), ErrHello},
		{"unknown flag", edit(func(b []byte) []byte { b[1] |= 8; return b }), ErrHello},
		{"confirm without proof", []byte{1, 2, 0, 0}, ErrHello},
		{"committed with proof", edit(func(b []byte) []byte { b[1] |= 4; return b }), ErrHello},
		{"truncated proof", good[:len(good)-1], ErrHello},
		{"proof flag without proof", []byte{1, 1, 0, 0}, ErrHello},
		{"trailing byte", edit(func(b []byte) []byte { return append(b, 0) }), ErrHello},
		{"name longer than the message", []byte{1, 0, 20, 'a'}, ErrHello},
		{"name of 33 bytes", append([]byte{1, 0, 33}, make([]byte, 34)...), ErrHello},
		{"control character", []byte{1, 0, 1, '\n', 0}, ErrHello},
		{"line 0", []byte{1, 0, 0, 1, 0}, ErrHello},
		{"line twice", []byte{1, 0, 0, 2, 5, 5}, ErrHello},
		{"17 lines", append([]byte{1, 0, 0, 17}, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17), ErrHello},
		{"too long", make([]byte, MaxHelloLen+1), ErrHello},
	} {
		if h, err := ParseHello(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("%s: ParseHello(%x) = %+v, %v; want %v", tc.name, tc.in, h, err, tc.want)
		}
	}
}
