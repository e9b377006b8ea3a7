package invite

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"unicode"
	"unicode/utf8"

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
	// Labels are the sender's own names for its lines ("kitchen"), only
	// for lines in Lines, each ValidLabel; only in an announcement
	// (version 3), which carries no proof, ack or flag. Nil means this
	// hello does not say (versions 1 and 2, and every hello of an older
	// peerline); non-nil, even empty, is the sender's whole set.
	Labels map[int]string
}

// Limits of a Hello.
const (
	MaxHelloLines = 16
	helloVersion  = 1
	// helloVersionAck is the version of an inviter's answer with Ack
	// (accepted or committed), the only one written in version 2:
	// everything else stays in version 1, which older peerlines read.
	helloVersionAck = 2
	// helloVersionLabels is an announcement: name, lines and labels,
	// nothing else. Older peerlines refuse it (ErrVersion) and ignore it.
	helloVersionLabels = 3
	helloHasProof      = 1
	helloConfirm       = 2
	helloCommitted     = 4
	helloFlags         = helloHasProof | helloConfirm | helloCommitted
	// MaxLabelLen bounds a line's label, as config does.
	MaxLabelLen = 63
	// MaxAnswerLen is the longest Hello in versions 1 and 2, the ones
	// a Connect box carries (rendezvous.MaxPair) and older peerlines
	// read.
	MaxAnswerLen = 3 + MaxNameLen + 1 + MaxHelloLines + 32
	// MaxHelloLen is the longest encoded Hello: an announcement with a
	// label of MaxLabelLen on each of MaxHelloLines lines.
	MaxHelloLen = 3 + MaxNameLen + 1 + MaxHelloLines + 1 + MaxHelloLines*(2+MaxLabelLen)
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
// Version 3 is an announcement, a node's name, lines and line labels, sent
// on the path to every peer (pkg/pairing), never in a box:
//
//	version(1) = 3
//	flags(1) = 0
//	name-length(1) name
//	line-count(1) lines(1 byte each)
//	label-count(1) (line(1) label-length(1) label)..., lines in
//	               increasing order, each in lines; a label is ValidLabel
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
	case h.Labels != nil && (flags != 0 || h.Committed || h.Ack != nil):
		return nil, errors.New("line labels go only in an announcement, without pairing data")
	}
	if err := validHelloLabels(h.Labels, h.Lines); err != nil {
		return nil, err
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
	if h.Labels != nil {
		version = helloVersionLabels
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
	if h.Labels != nil {
		b = append(b, byte(len(h.Labels)))
		for _, l := range slices.Sorted(maps.Keys(h.Labels)) {
			b = append(b, byte(l), byte(len(h.Labels[l])))
			b = append(b, h.Labels[l]...)
		}
	}
	return b, nil
}

// ValidLabel says why label cannot be announced, if it cannot: 1 to
// MaxLabelLen bytes of UTF-8, without control characters (config refuses
// those, and a peer's label is shown and dialled here).
func ValidLabel(label string) error {
	if label == "" || len(label) > MaxLabelLen {
		return fmt.Errorf("label %q: use 1 to %d bytes", label, MaxLabelLen)
	}
	if !utf8.ValidString(label) {
		return fmt.Errorf("label %q is not UTF-8", label)
	}
	for _, r := range label {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || unicode.In(r, unicode.Zl, unicode.Zp) {
			return fmt.Errorf("label %q contains the control character %U", label, r)
		}
	}
	return nil
}

// validHelloLabels checks labels against the lines they name.
func validHelloLabels(labels map[int]string, lines []int) error {
	if len(labels) > MaxHelloLines {
		return fmt.Errorf("%d line labels; a node announces at most %d", len(labels), MaxHelloLines)
	}
	for l, label := range labels {
		if !slices.Contains(lines, l) {
			return fmt.Errorf("a label for line %d, which is not among the lines", l)
		}
		if err := ValidLabel(label); err != nil {
			return fmt.Errorf("line %d: %w", l, err)
		}
	}
	return nil
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
	if v != helloVersion && v != helloVersionAck && v != helloVersionLabels {
		if !r.short && v > helloVersionLabels {
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
	if v == helloVersionLabels && flags != 0 {
		return bad("version 3 with flags %#x; it is only an announcement", flags)
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
	if v == helloVersionLabels {
		n := int(r.byte())
		if n > MaxHelloLines {
			return bad("%d line labels", n)
		}
		h.Labels = make(map[int]string, n)
		last := -1
		for range n {
			l := int(r.byte())
			label := string(r.take(int(r.byte())))
			if r.short {
				break
			}
			if l <= last {
				return bad("line labels out of order")
			}
			last = l
			h.Labels[l] = label
		}
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
	if err := validHelloLabels(h.Labels, h.Lines); err != nil {
		return bad("%v", err)
	}
	return h, nil
}
