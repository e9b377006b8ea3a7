package rendezvous

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"

	"github.com/peerline/peerline/pkg/nodekey"
)

// PairMsg is pairing data (pkg/invite's Hello) one node sends another
// directly, on the path their tunnel uses (TypePair), once the two have a
// path: the joiner's confirmation and the inviter's answer to it, which
// must get through after the introduction that carried the first Hellos.
// It is sealed with the two nodes' PeerAEAD like a probe; Time (the
// sender's clock, unix milliseconds) lets the receiver refuse old copies.
type PairMsg struct {
	Sender nodekey.Key
	Time   int64
	Data   []byte
}

const (
	// MaxPairData bounds PairMsg.Data: a Hello (pkg/invite) is at most
	// 84 bytes while pairing and 1093 as an announcement with line
	// labels. Peerlines before announcements took at most 128 and drop
	// a longer datagram unopened, as they would drop the announcement
	// they cannot read. The largest pair datagram, relayed, still fits
	// a 1280-byte IPv6 packet.
	MaxPairData = 1100
	// MinPairLen and MaxPairLen bound a pair datagram.
	MinPairLen = directHdrLen + 8 + TagLen
	MaxPairLen = MinPairLen + MaxPairData
	labelPair  = "peerline rendezvous v1 pair"
)

// AppendPair appends m, sealed for recipient, to dst.
func AppendPair(dst []byte, aead cipher.AEAD, recipient nodekey.Key, m PairMsg) ([]byte, error) {
	if len(m.Data) > MaxPairData {
		return dst, fmt.Errorf("rendezvous: pair data of %d bytes, at most %d", len(m.Data), MaxPairData)
	}
	plain := make([]byte, 8, 8+len(m.Data))
	binary.BigEndian.PutUint64(plain, uint64(m.Time))
	plain = append(plain, m.Data...)
	return sealDirect(dst, aead, labelPair, TypePair, m.Sender, recipient, plain)
}

// PairSender returns the claimed sender of a pair datagram without opening
// it, so the receiver can pick the key to open it with.
func PairSender(b []byte) (nodekey.Key, bool) {
	if len(b) < MinPairLen || len(b) > MaxPairLen || b[0] != Magic || b[1] != Version || b[3] != 0 || Type(b[2]) != TypePair {
		return nodekey.Key{}, false
	}
	return directSender(b), true
}

// OpenPair opens a pair datagram that its sender sealed for recipient with
// aead (PeerAEAD of the two). Data is a copy.
func OpenPair(b []byte, aead cipher.AEAD, recipient nodekey.Key) (PairMsg, error) {
	sender, ok := PairSender(b)
	if !ok {
		return PairMsg{}, ErrMalformed
	}
	plain, err := openDirect(nil, b, aead, labelPair, recipient)
	if err != nil {
		return PairMsg{}, err
	}
	return PairMsg{Sender: sender, Time: int64(binary.BigEndian.Uint64(plain)), Data: plain[8:]}, nil
}
