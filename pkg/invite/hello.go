package invite

import (
	"errors"
	"fmt"

	"github.com/peerline/peerline/pkg/numplan"
)

// Hello is what joiner and inviter tell each other while pairing, each
// inside a box sealed for the other (rendezvous.PeerAEAD): the joiner's join
// request carries Proof; the inviter's answer carries Ack instead.
//
// Pairing is a two-phase commit (pkg/pairing): the inviter's answer is
// its acceptance (it keeps the joiner as a provisional peer), with Ack
// naming the invite it accepted; the joiner then saves the peer for good
// and says so with Proof and Confirm until the inviter, having saved it
// for good as well, answers with Committed and Ack, which names the
// pairing it committed.
type Hello struct {
	// Name is the sender's node name, for display (MaxNameLen bytes).
	Name string
	// Lines are the sender's phone lines (numplan.ValidLine), each once,
	// at most MaxHelloLines.
	Lines []int
	// Proof is Proof(secret, inviter, joiner), only in a join request or
	// a confirmation.
	Proof *[32]byte
	// Confirm (joiner to inviter, with Proof) says the joiner has saved
	// the pairing for good: the inviter may commit.
	Confirm bool
	// Committed (inviter to joiner) says the inviter has saved the
	// pairing for good: the joiner may stop confirming.
	Committed bool
	// Ack names the invite an inviter's answer is about, so that the
	// joiner takes it for its own pairing only, never for an earlier one
	// of the same two Pis: with Committed it is CommitAck(proof) of the
	// invite the inviter committed; without, AcceptAck(proof) of the
	// invite it accepted (reserved for the joiner). An answer without Ack
	// (version 1) comes from an older peerline, or is the copy an
	// inviter sends for one.
	Ack *[32]byte
}

// Limits of a Hello.
const (
	MaxHelloLines = 16
	helloVersion  = 1
	// helloVersionAck is the version of an inviter's answer with Ack
	// (accepted or committed), the only one written in version 2:
	// everything else stays in version 1, which older peerlines read.
	helloVersionAck = 2
	helloHasProof   = 1
	helloConfirm    = 2
	helloCommitted  = 4
	helloFlags      = helloHasProof | helloConfirm | helloCommitted
	// MaxHelloLen is the longest encoded Hello.
	MaxHelloLen = 3 + MaxNameLen + 1 + MaxHelloLines + 32
)

// ErrHello is wrapped by every ParseHello error except ErrVersion.
var ErrHello = errors.New("the peer sent a malformed hello")

// Hello wire format, all lengths bounded so a parser allocates at most
// MaxHelloLen bytes. Version 1:
//
//	version(1) = 1
//	flags(1): bit 0 proof follows, bit 1 confirm (needs bit 0), bit 2
//	          committed (not with bit 0); other bits zero
//	name-length(1) name
//	line-count(1) lines(1 byte each)
//	[proof(32)]
//
// Version 2 is an inviter's answer bound to its invite, and nothing else:
//
//	version(1) = 2
//	flags(1) = 0 (accepted: Ack is AcceptAck) or 4 (committed: CommitAck)
//	name-length(1) name
//	line-count(1) lines(1 byte each)
//	ack(32)
//
// A peerline that reads only version 1 refuses a version-2 hello as from
// a newer peerline (ErrVersion), and the one that read version 2 only
// for committed refuses an accepted one as malformed; both ignore it, so
// an inviter sends a joiner both forms of each answer (pkg/pairing).

// AppendHello appends h's encoding to b, or says why h cannot be sent.
func AppendHello(b []byte, h Hello) ([]byte, error) {
	if err := validName(h.Name); err != nil {
		return nil, err
	}
	if err := validHelloLines(h.Lines); err != nil {
		return nil, err
	}
	var flags byte
	if h.Proof != nil {
		flags |= helloHasProof
	}
	switch {
	case h.Confirm && h.Proof == nil:
		return nil, errors.New("a pairing confirmation needs the invite's proof")
	case h.Committed && h.Proof != nil:
		return nil, errors.New("only the inviter says committed, and it sends no proof")
	case h.Ack != nil && h.Proof != nil:
		return nil, errors.New("a pairing acknowledgement is the inviter's, and it sends no proof")
	}
	if h.Confirm {
		flags |= helloConfirm
	}
	if h.Committed {
		flags |= helloCommitted
	}
	version := byte(helloVersion)
	if h.Ack != nil {
		version = helloVersionAck
	}
	b = append(b, version, flags, byte(len(h.Name)))
	b = append(b, h.Name...)
	b = append(b, byte(len(h.Lines)))
	for _, s := range h.Lines {
		b = append(b, byte(s))
	}
	if h.Proof != nil {
		b = append(b, h.Proof[:]...)
	}
	if h.Ack != nil {
		b = append(b, h.Ack[:]...)
	}
	return b, nil
}

func validHelloLines(lines []int) error {
	if len(lines) > MaxHelloLines {
		return fmt.Errorf("%d phone lines; a node announces at most %d", len(lines), MaxHelloLines)
	}
	var seen [256]bool
	for _, s := range lines {
		if !numplan.ValidLine(s) {
			return fmt.Errorf("line %d: use %d to %d", s, numplan.MinLine, numplan.MaxLine)
		}
		if seen[s] {
			return fmt.Errorf("line %d is listed twice", s)
		}
		seen[s] = true
	}
	return nil
}

// ParseHello reads a Hello. Errors wrap ErrHello, or ErrVersion if the peer
// runs a newer format.
func ParseHello(b []byte) (Hello, error) {
	bad := func(format string, args ...any) (Hello, error) {
		return Hello{}, fmt.Errorf("%w: %s", ErrHello, fmt.Sprintf(format, args...))
	}
	if len(b) > MaxHelloLen {
		return bad("%d bytes, at most %d", len(b), MaxHelloLen)
	}
	r := &reader{b: b}
	v := r.byte()
	if v != helloVersion && v != helloVersionAck {
		if !r.short && v > helloVersionAck {
			return Hello{}, fmt.Errorf("peer's hello: %w", ErrVersion)
		}
		return bad("version %d", v)
	}
	flags := r.byte()
	if flags&^helloFlags != 0 {
		return bad("unknown flags %#x", flags)
	}
	if flags&helloConfirm != 0 && flags&helloHasProof == 0 || flags&helloCommitted != 0 && flags&helloHasProof != 0 {
		return bad("flags %#x do not go together", flags)
	}
	if v == helloVersionAck && flags != 0 && flags != helloCommitted {
		return bad("version 2 with flags %#x; it is only for an inviter's answer", flags)
	}
	h := Hello{Confirm: flags&helloConfirm != 0, Committed: flags&helloCommitted != 0}
	n := int(r.byte())
	if n > MaxNameLen {
		return bad("name of %d bytes", n)
	}
	h.Name = string(r.take(n))
	n = int(r.byte())
	if n > MaxHelloLines {
		return bad("%d lines", n)
	}
	if n > 0 {
		h.Lines = make([]int, n)
		for i, c := range r.take(n) {
			h.Lines[i] = int(c)
		}
	}
	if flags&helloHasProof != 0 {
		p := [32]byte(r.take(32)) // a copy: b may be a reused buffer
		h.Proof = &p
	}
	if v == helloVersionAck {
		a := [32]byte(r.take(32))
		h.Ack = &a
	}
	switch {
	case r.short:
		return bad("truncated")
	case len(r.b) != 0:
		return bad("%d bytes left over", len(r.b))
	}
	if err := validName(h.Name); err != nil {
		return bad("%v", err)
	}
	if err := validHelloLines(h.Lines); err != nil {
		return bad("%v", err)
	}
	return h, nil
}
