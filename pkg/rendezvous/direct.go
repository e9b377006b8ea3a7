package rendezvous

import (
	"crypto/cipher"
	"crypto/rand"
	"fmt"

	"github.com/peerline/peerline/pkg/nodekey"
)

// Direct datagrams (probes and pairing data) go from node to node without
// a server and share one frame, sealed with the two nodes' PeerAEAD:
//
//	header(4) sender(32) nonce(24) sealed(plain)
//
// The associated data is a label of the datagram's kind, the header (so
// that one type cannot pass as another), the sender and the recipient.
const directHdrLen = HeaderLen + nodekey.Len + NonceLen

// sealDirect appends a direct datagram of type t carrying plain, sealed by
// sender for recipient, to dst.
func sealDirect(dst []byte, aead cipher.AEAD, label string, t Type, sender, recipient nodekey.Key, plain []byte) ([]byte, error) {
	var nonce [NonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return dst, fmt.Errorf("rendezvous: nonce: %w", err)
	}
	start := len(dst)
	dst = AppendHeader(dst, t)
	dst = append(dst, sender[:]...)
	dst = append(dst, nonce[:]...)
	ad := directAD(label, dst[start:start+HeaderLen+nodekey.Len], recipient)
	return aead.Seal(dst, nonce[:], plain, ad), nil
}

// directSender returns the claimed sender of a direct datagram whose
// header its caller checked.
func directSender(b []byte) nodekey.Key {
	return nodekey.Key(b[HeaderLen : HeaderLen+nodekey.Len])
}

// openDirect opens the direct datagram b (its header checked by the
// caller) that its sender sealed for recipient, appending the plaintext
// to dst.
func openDirect(dst, b []byte, aead cipher.AEAD, label string, recipient nodekey.Key) ([]byte, error) {
	hdr := HeaderLen + nodekey.Len
	plain, err := aead.Open(dst, b[hdr:directHdrLen], b[directHdrLen:], directAD(label, b[:hdr], recipient))
	if err != nil {
		return nil, ErrAuth
	}
	return plain, nil
}

// directAD binds the label, the header, the sender and the recipient.
func directAD(label string, headerAndSender []byte, recipient nodekey.Key) []byte {
	ad := make([]byte, 0, len(label)+HeaderLen+2*nodekey.Len)
	return append(append(append(ad, label...), headerAndSender...), recipient[:]...)
}
