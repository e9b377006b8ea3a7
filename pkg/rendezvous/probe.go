package rendezvous

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/peerline/peerline/pkg/nodekey"
)

// Probe is what two nodes send each other directly, on the socket their
// WireGuard tunnel uses, to open their NATs and find a path that works
// (TypeProbe), and the answer (TypeProbeReply) that proves the path works
// in both directions and measures its round trip.
//
// A probe is sealed with the two nodes' PeerAEAD, so nobody else can make a
// node believe a path works: a reply is only taken when it opens and echoes
// the TxID of a probe the node sent.
type Probe struct {
	Sender nodekey.Key
	Reply  bool
	// Bye says the sender is shutting down (TypeBye): its peers can show
	// it offline at once and fail calls to it, instead of after a minute
	// of silence.
	Bye bool
	// TxID identifies the probe; a reply echoes it.
	TxID [12]byte
	// Time is the prober's clock in unix milliseconds, echoed in the reply
	// so that the prober needs no state to measure the round trip.
	Time int64
}

const (
	probePlainLen = 12 + 8
	// ProbeLen is the size of every probe datagram.
	ProbeLen   = directHdrLen + probePlainLen + TagLen
	labelProbe = "peerline rendezvous v1 probe"
)

// NewTxID returns a random probe id.
func NewTxID() ([12]byte, error) {
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return id, fmt.Errorf("rendezvous: probe id: %w", err)
	}
	return id, nil
}

// AppendProbe appends p, sealed for recipient, to dst.
func AppendProbe(dst []byte, aead cipher.AEAD, recipient nodekey.Key, p Probe) ([]byte, error) {
	t := TypeProbe
	switch {
	case p.Bye:
		t = TypeBye
	case p.Reply:
		t = TypeProbeReply
	}
	var plain [probePlainLen]byte
	copy(plain[:], p.TxID[:])
	binary.BigEndian.PutUint64(plain[12:], uint64(p.Time))
	return sealDirect(dst, aead, labelProbe, t, p.Sender, recipient, plain[:])
}

// ProbeSender returns the claimed sender of a probe datagram without
// opening it, so the receiver can pick the key to open it with.
func ProbeSender(b []byte) (nodekey.Key, bool) {
	if len(b) != ProbeLen || b[0] != Magic || b[1] != Version || b[3] != 0 ||
		(Type(b[2]) != TypeProbe && Type(b[2]) != TypeProbeReply && Type(b[2]) != TypeBye) {
		return nodekey.Key{}, false
	}
	return directSender(b), true
}

// OpenProbe opens a probe datagram that its sender sealed for recipient
// with aead (PeerAEAD of the two). The label and the header in the
// associated data keep a probe from passing as a reply.
func OpenProbe(b []byte, aead cipher.AEAD, recipient nodekey.Key) (Probe, error) {
	sender, ok := ProbeSender(b)
	if !ok {
		return Probe{}, ErrMalformed
	}
	var buf [probePlainLen]byte
	plain, err := openDirect(buf[:0], b, aead, labelProbe, recipient)
	if err != nil {
		return Probe{}, err
	}
	p := Probe{Sender: sender, Reply: Type(b[2]) == TypeProbeReply, Bye: Type(b[2]) == TypeBye}
	copy(p.TxID[:], plain[:12])
	p.Time = int64(binary.BigEndian.Uint64(plain[12:]))
	return p, nil
}
