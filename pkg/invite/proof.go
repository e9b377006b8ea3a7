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

// commitLabel makes an acknowledgement of a commit something no proof
// can ever be, and the other way round.
const commitLabel = "peerline invite committed v1"

// CommitAck is what the inviter's Committed hello carries (Hello.Ack) for
// the pairing with this proof: HMAC-SHA256 keyed with the proof over a
// label. The joiner has the proof in its journal and the inviter computes
// it from the invite's secret, so each can name the pairing without the
// secret, and an acknowledgement of one invite never passes for another's:
// an earlier pairing of the same two Pis used another invite, so another
// proof.
func CommitAck(proof [32]byte) [32]byte { return labelledAck(proof, commitLabel) }

// acceptLabel keeps an acceptance apart from a commit and a proof.
const acceptLabel = "peerline invite accepted v1"

// AcceptAck is what the inviter's answer to a join request carries
// (Hello.Ack without Committed): HMAC-SHA256 keyed with the proof of the
// invite it reserved for the joiner, over a label. Like CommitAck it
// names the invite without the secret, so a joiner takes as its answer
// only one about the invite it is joining with: an answer of an earlier
// pairing of the same two Pis, or the hello an inviter that has the
// joiner as a peer sends anyway, is not one.
func AcceptAck(proof [32]byte) [32]byte { return labelledAck(proof, acceptLabel) }

// labelledAck is HMAC-SHA256 keyed with proof over label.
func labelledAck(proof [32]byte, label string) [32]byte {
	m := hmac.New(sha256.New, proof[:])
	m.Write([]byte(label))
	var a [32]byte
	m.Sum(a[:0])
	return a
}
