package rendezvous

import (
	"encoding/binary"
	"time"
)

// Invite storage: an inviting node keeps a sealed invite blob (pkg/invite)
// on its rendezvous servers under an id derived from the invite code's
// secret, so that the code itself can stay short; a joiner fetches the blob
// by id and opens it with the secret. See the package documentation for the
// wire format and what the server learns.

// Invite limits.
const (
	// InviteIDLen is the length of an invite id: 128 bits, so ids cannot
	// be guessed or enumerated.
	InviteIDLen = 16
	// MaxInviteBlob is the largest invite blob a server stores and
	// serves.
	MaxInviteBlob = 320
	// MaxInviteTTL is how long a server keeps a blob at most, whatever
	// expiry the owner asked for.
	MaxInviteTTL = 30 * 24 * time.Hour
	// InviteReplyMaxLen is the longest Invite datagram: header, id, length
	// and a blob of MaxInviteBlob bytes.
	InviteReplyMaxLen = HeaderLen + InviteIDLen + 2 + MaxInviteBlob
	// InviteGetLen is the size of every InviteGet datagram. It is padded
	// to the longest reply, so that a server answering an unauthenticated
	// InviteGet never sends more bytes than it received, and needs no
	// cookie round trip.
	InviteGetLen = InviteReplyMaxLen
)

// maxInviteTime bounds the expiry on the wire (unix seconds; about the
// year 36800), so that every accepted value converts to a time.Time and
// back unchanged.
const maxInviteTime = 1 << 40

// InvitePut asks the server to store Blob under ID for the sender until
// Expires (capped by the server at MaxInviteTTL from now). An empty Blob
// deletes the sender's blob under ID; Expires is then ignored. Only the
// sender that stored an id may replace or delete it.
type InvitePut struct {
	ID [InviteIDLen]byte
	// Expires travels as unix seconds; the zero time (or any time before
	// 1970) as 0, which parses back to the zero time.
	Expires time.Time
	Blob    []byte
}

// InvitePutReply answers an InvitePut: Stored is false when the server
// refused it (id owned by another node, expiry in the past, or a limit
// reached).
type InvitePutReply struct {
	ReplyTo ReplyID
	ID      [InviteIDLen]byte
	Stored  bool
}

func (InvitePut) Type() Type      { return TypeInvitePut }
func (InvitePutReply) Type() Type { return TypeInvitePutReply }

func (m InvitePut) Append(dst []byte) []byte {
	dst = append(dst, m.ID[:]...)
	var sec uint64
	if !m.Expires.IsZero() && m.Expires.Unix() > 0 {
		sec = uint64(min(m.Expires.Unix(), maxInviteTime))
	}
	dst = binary.BigEndian.AppendUint64(dst, sec)
	return appendBox(dst, m.Blob)
}

func (m InvitePutReply) Append(dst []byte) []byte {
	dst = append(dst, m.ReplyTo[:]...)
	dst = append(dst, m.ID[:]...)
	if m.Stored {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func parseInvitePut(r *reader) Message {
	var v InvitePut
	r.bytes(v.ID[:])
	switch sec := r.u64(); {
	case sec > maxInviteTime:
		r.fail()
	case sec > 0:
		v.Expires = time.Unix(int64(sec), 0)
	}
	v.Blob = r.prefixed(MaxInviteBlob)
	return v
}

func parseInvitePutReply(r *reader) Message {
	var v InvitePutReply
	r.bytes(v.ReplyTo[:])
	r.bytes(v.ID[:])
	switch r.u8() {
	case 0:
	case 1:
		v.Stored = true
	default:
		r.fail()
	}
	return v
}

// MaxInviteJoin is the largest join box an InviteGet carries: what its
// fixed length leaves after the header, the id and the box's length.
const MaxInviteJoin = InviteGetLen - HeaderLen - InviteIDLen - 2

// InviteJoin is a join box (pkg/invite: sealed with a key derived from the
// invite's secret, which the server does not have) that a joiner sent with
// its InviteGet; the server pushes it, sealed, to the node that stored the
// blob under ID, so that the inviter can start pairing in the same round
// trip as the joiner fetches the blob.
type InviteJoin struct {
	ID  [InviteIDLen]byte
	Box []byte
}

func (InviteJoin) Type() Type { return TypeInviteJoin }

func (m InviteJoin) Append(dst []byte) []byte {
	dst = append(dst, m.ID[:]...)
	return appendBox(dst, m.Box)
}

func parseInviteJoin(r *reader) Message {
	var v InviteJoin
	r.bytes(v.ID[:])
	v.Box = r.prefixed(MaxInviteJoin)
	return v
}

// AppendInviteGet appends an InviteGet datagram asking for id, carrying a
// join box (none if empty): the header, the id, the box with its length,
// and zero padding up to InviteGetLen. A box longer than MaxInviteJoin is
// left out.
func AppendInviteGet(b []byte, id [InviteIDLen]byte, join []byte) []byte {
	if len(join) > MaxInviteJoin {
		join = nil
	}
	start := len(b)
	b = AppendHeader(b, TypeInviteGet)
	b = append(b, id[:]...)
	b = appendBox(b, join)
	return append(b, make([]byte, InviteGetLen-(len(b)-start))...)
}

// ParseInviteGet returns the id an InviteGet datagram asks for and the join
// box it carries (nil if none; it aliases datagram). Any length other than
// InviteGetLen, or non-zero padding, is refused: a shorter request could
// make the answer larger than the question.
func ParseInviteGet(datagram []byte) (id [InviteIDLen]byte, join []byte, err error) {
	t, err := ParseHeader(datagram)
	if err != nil {
		return id, nil, err
	}
	if t != TypeInviteGet {
		return id, nil, ErrType
	}
	if len(datagram) != InviteGetLen {
		return id, nil, ErrMalformed
	}
	r := reader{b: datagram[HeaderLen:]}
	r.bytes(id[:])
	join = r.prefixed(MaxInviteJoin)
	if err := r.padding(); err != nil {
		return [InviteIDLen]byte{}, nil, err
	}
	if len(join) == 0 {
		join = nil
	}
	return id, join, nil
}

// AppendInvite appends the answer to an InviteGet for id: the blob, or an
// empty blob for "not known here". A blob longer than MaxInviteBlob is sent
// as empty, so that the answer can never exceed its request.
func AppendInvite(b []byte, id [InviteIDLen]byte, blob []byte) []byte {
	if len(blob) > MaxInviteBlob {
		blob = nil
	}
	b = AppendHeader(b, TypeInvite)
	b = append(b, id[:]...)
	return appendBox(b, blob)
}

// ParseInvite parses an Invite datagram. An empty blob means the server
// does not know id (or it expired). blob aliases datagram and is nil when
// empty.
func ParseInvite(datagram []byte) (id [InviteIDLen]byte, blob []byte, err error) {
	t, err := ParseHeader(datagram)
	if err != nil {
		return id, nil, err
	}
	if t != TypeInvite {
		return id, nil, ErrType
	}
	if len(datagram) > InviteReplyMaxLen {
		return id, nil, ErrTooLong
	}
	r := reader{b: datagram[HeaderLen:]}
	r.bytes(id[:])
	n := int(r.u16())
	blob = r.take(n)
	switch {
	case r.err != nil:
		return [InviteIDLen]byte{}, nil, r.err
	case len(r.b) != 0:
		return [InviteIDLen]byte{}, nil, ErrMalformed
	case n == 0:
		blob = nil
	}
	return id, blob, nil
}
