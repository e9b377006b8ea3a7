package invite

import (
	"crypto/hmac"
	"crypto/sha256"

	"github.com/peerline/peerline/pkg/nodekey"
)

// proofLabel binds a proof to its purpose, so the secret's HMAC can never
// be taken for anything else peerline might compute from it.
const proofLabel = "peerline invite proof v1"

// Proof is what a joiner sends to show it holds the invite's secret without
// revealing it: HMAC-SHA256 keyed with the secret over a label and both
// public keys. Naming the joiner means a proof seen by anyone (the inviter,
// or a server if the box were ever opened) cannot be replayed by another
// node; naming the inviter means it is good for this inviter only.
func Proof(secret [16]byte, inviter, joiner nodekey.Key) [32]byte {
	m := hmac.New(sha256.New, secret[:])
	m.Write([]byte(proofLabel))
	m.Write(inviter[:])
	m.Write(joiner[:])
	var p [32]byte
	m.Sum(p[:0])
	return p
}

// VerifyProof reports, in constant time, whether proof is
// Proof(secret, inviter, joiner).
func VerifyProof(secret [16]byte, inviter, joiner nodekey.Key, proof [32]byte) bool {
	want := Proof(secret, inviter, joiner)
	return hmac.Equal(want[:], proof[:])
}
