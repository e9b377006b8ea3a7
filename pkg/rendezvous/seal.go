package rendezvous

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"

	"github.com/peerline/peerline/pkg/nodekey"
)

// Envelope sizes.
const (
	NonceLen = chacha20poly1305.NonceSizeX
	TagLen   = chacha20poly1305.Overhead
	// EnvelopeHeaderLen is everything before the ciphertext.
	EnvelopeHeaderLen = HeaderLen + CookieLen + nodekey.Len + 8 + NonceLen
	// EnvelopeOverhead is what sealing adds to a body.
	EnvelopeOverhead = EnvelopeHeaderLen + TagLen
)

// ErrAuth is returned when a sealed message does not open: wrong key,
// changed bytes, or not meant for us. Deliberately one error for all.
var ErrAuth = errors.New("rendezvous: message authentication failed")

// Domain-separation labels: a key made for one purpose is never valid for
// another, even from the same X25519 secret.
const (
	labelServer = "peerline rendezvous v1 node-server"
	labelPeer   = "peerline rendezvous v1 node-node"
	labelBox    = "peerline rendezvous v1 box"
)

// NodeAEAD is the node's side of the node↔server key.
func NodeAEAD(nodePriv, serverPub nodekey.Key) (cipher.AEAD, error) {
	return derive(nodePriv, serverPub, labelServer, nodePriv.Public(), serverPub)
}

// ServerAEAD is the server's side of the node↔server key.
func ServerAEAD(serverPriv, nodePub nodekey.Key) (cipher.AEAD, error) {
	return derive(serverPriv, nodePub, labelServer, nodePub, serverPriv.Public())
}

// PeerAEAD is the key between two nodes for Boxes; both sides derive the
// same key. The server does not know it.
func PeerAEAD(priv, peerPub nodekey.Key) (cipher.AEAD, error) {
	a, b := priv.Public(), peerPub
	if string(a[:]) > string(b[:]) {
		a, b = b, a
	}
	return derive(priv, peerPub, labelPeer, a, b)
}

func derive(priv, peerPub nodekey.Key, label string, k1, k2 nodekey.Key) (cipher.AEAD, error) {
	shared, err := curve25519.X25519(priv[:], peerPub[:])
	if err != nil {
		// A low-order point gives an all-zero secret: refuse it, or
		// anyone could compute the key.
		return nil, fmt.Errorf("rendezvous: bad public key %s: %w", peerPub, err)
	}
	info := make([]byte, 0, len(label)+2*nodekey.Len)
	info = append(append(append(info, label...), k1[:]...), k2[:]...)
	key, err := hkdf.Key(sha256.New, shared, nil, string(info), chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	return chacha20poly1305.NewX(key)
}

// Envelope is a sealed message as it travels, before opening. Parsing it
// costs no cryptography: a server checks size, type, cookie and time first,
// and only then derives or looks up a key.
type Envelope struct {
	Type   Type
	Cookie [CookieLen]byte
	Sender nodekey.Key
	Time   int64 // unix milliseconds
	Nonce  [NonceLen]byte

	raw []byte // the whole datagram, for the associated data and the ciphertext
}

// ParseEnvelope parses the clear part of a sealed datagram. The Envelope
// aliases b.
func ParseEnvelope(b []byte) (Envelope, error) {
	t, err := ParseHeader(b)
	if err != nil {
		return Envelope{}, err
	}
	if !t.Sealed() {
		return Envelope{}, ErrType
	}
	if len(b) < EnvelopeOverhead {
		return Envelope{}, ErrShort
	}
	if len(b) > MaxPacket {
		return Envelope{}, ErrTooLong
	}
	r := reader{b: b[HeaderLen:]}
	e := Envelope{Type: t, raw: b}
	r.bytes(e.Cookie[:])
	r.bytes(e.Sender[:])
	e.Time = r.i64()
	r.bytes(e.Nonce[:])
	return e, r.err
}

// ReplyID is the id a reply to this request carries.
func (e *Envelope) ReplyID() ReplyID { return ReplyID(e.Nonce[:8]) }

// Len is the size of the datagram.
func (e *Envelope) Len() int { return len(e.raw) }

// Age is how far the envelope's time is from now (negative if in the
// future).
func (e *Envelope) Age(now time.Time) time.Duration {
	return now.Sub(time.UnixMilli(e.Time))
}

// Open authenticates and decrypts the body with aead and parses it. scratch
// is reused for the plaintext if large enough.
func (e *Envelope) Open(aead cipher.AEAD, scratch []byte) (Message, error) {
	ad := e.raw[:EnvelopeHeaderLen]
	pt, err := aead.Open(scratch[:0], e.Nonce[:], e.raw[EnvelopeHeaderLen:], ad)
	if err != nil {
		return nil, ErrAuth
	}
	return ParseBody(e.Type, pt)
}

// Seal appends a sealed datagram carrying m to dst. padTo pads the body with
// zeros so that the datagram is at least that long (requests are padded so
// that the server's reply is never larger than the request).
func Seal(dst []byte, aead cipher.AEAD, sender nodekey.Key, cookie [CookieLen]byte, now time.Time, m Message, padTo int) ([]byte, error) {
	var nonce [NonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("rendezvous: nonce: %w", err)
	}
	return SealNonce(dst, aead, sender, cookie, now, nonce, m, padTo), nil
}

// SealNonce is Seal with a given nonce, for replies and tests. A nonce must
// never repeat under one key: use Seal unless you have a reason.
func SealNonce(dst []byte, aead cipher.AEAD, sender nodekey.Key, cookie [CookieLen]byte, now time.Time, nonce [NonceLen]byte, m Message, padTo int) []byte {
	start := len(dst)
	dst = AppendHeader(dst, m.Type())
	dst = append(dst, cookie[:]...)
	dst = append(dst, sender[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(now.UnixMilli()))
	dst = append(dst, nonce[:]...)
	adEnd := len(dst)
	body := m.Append(dst)
	if pad := padTo - (len(body) - start) - TagLen; pad > 0 {
		body = append(body, make([]byte, pad)...)
	}
	// Seal in place (plaintext[:0] as dst, as cipher.AEAD allows), with
	// room for the tag so nothing is copied.
	body = slices.Grow(body, TagLen)
	pt := body[adEnd:]
	ct := aead.Seal(pt[:0], nonce[:], pt, body[start:adEnd])
	return body[:adEnd+len(ct)]
}

// BoxOverhead is what SealBox adds to its plaintext.
const BoxOverhead = NonceLen + TagLen

// SealBox seals PeerInfo p from sender to recipient with their PeerAEAD,
// for the server to carry. The keys are bound as associated data, so a box
// cannot be passed off as coming from someone else or for someone else.
func SealBox(aead cipher.AEAD, sender, recipient nodekey.Key, p PeerInfo) ([]byte, error) {
	var nonce [NonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("rendezvous: nonce: %w", err)
	}
	out := append([]byte(nil), nonce[:]...)
	return aead.Seal(out, nonce[:], p.Append(nil), boxAD(sender, recipient)), nil
}

// OpenBox opens a box that sender sealed for recipient.
func OpenBox(aead cipher.AEAD, sender, recipient nodekey.Key, box []byte) (PeerInfo, error) {
	if len(box) < BoxOverhead || len(box) > MaxBox {
		return PeerInfo{}, ErrAuth
	}
	pt, err := aead.Open(nil, box[:NonceLen], box[NonceLen:], boxAD(sender, recipient))
	if err != nil {
		return PeerInfo{}, ErrAuth
	}
	return ParsePeerInfo(pt)
}

func boxAD(sender, recipient nodekey.Key) []byte {
	ad := make([]byte, 0, len(labelBox)+2*nodekey.Len)
	return append(append(append(ad, labelBox...), sender[:]...), recipient[:]...)
}

// MinRequestLen is the size a node pads every request to: at least the
// largest reply (RegisterReply), since the server never answers with more
// bytes than it received.
const MinRequestLen = EnvelopeOverhead + 32
