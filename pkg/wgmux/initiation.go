package wgmux

import (
	"crypto/hmac"
	"crypto/subtle"
	"hash"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"

	"github.com/peerline/peerline/pkg/nodekey"
)

// WireGuard message types and sizes (the protocol's fixed layout).
const (
	msgInitiation   = 1
	msgResponse     = 2
	msgCookieReply  = 3
	msgTransport    = 4
	initiationLen   = 148
	responseLen     = 92
	cookieReplyLen  = 64
	transportMinLen = 32
)

// initiationReader finds out which peer sent a handshake initiation: the
// one WireGuard message that carries no index of ours, so it cannot be
// routed to a device by index. It repeats the first steps of the Noise IK
// handshake the receiving device will do anyway (one X25519), after the
// cheap mac1 check that WireGuard puts in front of it for the same reason.
type initiationReader struct {
	priv    nodekey.Key
	mac1Key [blake2s.Size]byte
	hash0   [blake2s.Size]byte // H after mixing in our static public key
	chain0  [blake2s.Size]byte // C before the ephemeral
}

func newInitiationReader(priv nodekey.Key) *initiationReader {
	pub := priv.Public()
	r := &initiationReader{priv: priv}
	r.chain0 = blake2s.Sum256([]byte("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"))
	r.hash0 = blake2s.Sum256(append(r.chain0[:], "WireGuard v1 zx2c4 Jason@zx2c4.com"...))
	r.hash0 = blake2s.Sum256(append(r.hash0[:], pub[:]...))
	r.mac1Key = blake2s.Sum256(append([]byte("mac1----"), pub[:]...))
	return r
}

// sender returns the static public key inside initiation msg, or false if
// msg is not a valid initiation for this node.
func (r *initiationReader) sender(msg []byte) (nodekey.Key, bool) {
	var peer nodekey.Key
	if len(msg) != initiationLen {
		return peer, false
	}
	// mac1 covers everything before it; macs start at 116.
	const macOff = initiationLen - 32
	m, _ := blake2s.New128(r.mac1Key[:])
	m.Write(msg[:macOff])
	var sum [blake2s.Size]byte
	if subtle.ConstantTimeCompare(m.Sum(sum[:0])[:16], msg[macOff:macOff+16]) != 1 {
		return peer, false
	}
	ephemeral := msg[8:40]
	encStatic := msg[40:88]
	chain := kdf1(r.chain0[:], ephemeral)
	h := blake2s.Sum256(append(r.hash0[:], ephemeral...))
	ss, err := curve25519.X25519(r.priv[:], ephemeral)
	if err != nil {
		return peer, false
	}
	_, key := kdf2(chain[:], ss)
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return peer, false
	}
	var nonce [chacha20poly1305.NonceSize]byte
	if _, err := aead.Open(peer[:0], nonce[:], encStatic, h[:]); err != nil {
		return nodekey.Key{}, false
	}
	return peer, true
}

func newHMAC(key []byte) hash.Hash {
	return hmac.New(func() hash.Hash { h, _ := blake2s.New256(nil); return h }, key)
}

func hmacSum(key []byte, in ...[]byte) (out [blake2s.Size]byte) {
	m := newHMAC(key)
	for _, b := range in {
		m.Write(b)
	}
	m.Sum(out[:0])
	return out
}

func kdf1(chain, input []byte) [blake2s.Size]byte {
	prk := hmacSum(chain, input)
	return hmacSum(prk[:], []byte{1})
}

func kdf2(chain, input []byte) (t0, t1 [blake2s.Size]byte) {
	prk := hmacSum(chain, input)
	t0 = hmacSum(prk[:], []byte{1})
	t1 = hmacSum(prk[:], t0[:], []byte{2})
	return t0, t1
}
