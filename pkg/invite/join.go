package invite

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/peerline/peerline/pkg/nodekey"
)

// A join box lets a joiner ask to pair in the same round trip as it
// fetches a short code's blob: the joiner cannot yet write the usual proof
// (it binds the inviter's key, which is in the blob), so it seals its own
// key and Hello with a key derived from the secret instead, and the server
// passes the box to the blob's owner. Opening it proves knowledge of the
// secret as the proof does; the inviter then computes the proof itself.
//
//	version(1) = 1, nonce(24), XChaCha20-Poly1305(joiner(32) hello)
//
// with the BlobID as associated data, so a box is good for one invite.
//
// The nonce is not random but derived from the secret, the joiner's key
// and the hello (a synthetic IV: XChaCha20's nonce as a PRF of the
// plaintext under its own key), so a joiner that fetches the same invite
// again, also from a new `peerline join`, sends the very same box. The
// server knows a fetch it answered by its box's nonce, and answers the
// same joiner's fetch the same way, even for a while after the inviter
// deleted the blob (pkg/rvserver); the box reveals only that two fetches
// came from the same joiner with the same hello, which their source
// address says anyway.
// MaxJoinBox is the largest join box; it must fit the server's fetch
// request (rendezvous.InviteGetLen less its header, ID and length).
const MaxJoinBox = 320

const joinVersion = 1

// SealJoin seals a joiner's key and Hello (AppendHello's bytes) for the
// invite with this secret. The same three give the same box.
func SealJoin(secret [16]byte, joiner nodekey.Key, hello []byte) ([]byte, error) {
	m := hmac.New(sha256.New, derive(secret, joinNonceLabel, sha256.Size))
	m.Write(joiner[:])
	m.Write(hello)
	var nonce [chacha20poly1305.NonceSizeX]byte
	copy(nonce[:], m.Sum(nil))
	return sealJoin(secret, joiner, hello, nonce)
}

func sealJoin(secret [16]byte, joiner nodekey.Key, hello []byte, nonce [chacha20poly1305.NonceSizeX]byte) ([]byte, error) {
	a := secretAEAD(secret, joinKeyLabel)
	if 1+len(nonce)+nodekey.Len+len(hello)+a.Overhead() > MaxJoinBox {
		return nil, fmt.Errorf("invite: hello of %d bytes does not fit a join box", len(hello))
	}
	out := append(make([]byte, 0, MaxJoinBox), joinVersion)
	out = append(out, nonce[:]...)
	pt := append(joiner[:len(joiner):len(joiner)], hello...)
	return a.Seal(out, nonce[:], pt, blobAD(joinVersion, secret)), nil
}

// ErrJoinBox is a join box that does not open with the invite's secret.
var ErrJoinBox = errors.New("invite: join box does not open with this invite's secret")

// OpenJoin opens a join box with the secret of the invite it names.
func OpenJoin(secret [16]byte, box []byte) (joiner nodekey.Key, hello []byte, err error) {
	a := secretAEAD(secret, joinKeyLabel)
	if len(box) < 1+a.NonceSize()+nodekey.Len+a.Overhead() || len(box) > MaxJoinBox || box[0] != joinVersion {
		return joiner, nil, ErrJoinBox
	}
	pt, err := a.Open(nil, box[1:1+a.NonceSize()], box[1+a.NonceSize():], blobAD(joinVersion, secret))
	if err != nil {
		return joiner, nil, ErrJoinBox
	}
	copy(joiner[:], pt)
	if joiner.IsZero() {
		return joiner, nil, ErrJoinBox
	}
	return joiner, pt[nodekey.Len:], nil
}
