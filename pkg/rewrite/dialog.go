package rewrite

import (
	"bytes"
	"hash/maphash"
	"sync"
)

// Dialogs and the SIP flood limit.
//
// SIP from the peer is rate-limited so that a scanner cannot flood the
// phones (sipRate). One shared limit starves the calls that are already up:
// during a flood of new requests the BYE of an established call loses the
// race for a token as often as any scanner's OPTIONS, and the far phone
// stays in the call for as many retransmissions as it takes. So the limit
// falls only on what opens something new: requests outside any dialog this
// node knows (INVITE, OPTIONS, REGISTER, SUBSCRIBE, MESSAGE, ...), and
// responses to requests no local phone sent. Requests and responses within
// a dialog a local phone is part of (BYE, ACK, re-INVITE, UPDATE, INFO,
// NOTIFY, the CANCEL and ACK of a pending INVITE, and their responses) pass
// it, each dialog under a limit of its own (dialogRate) so that it cannot
// become the flood.
//
// What makes a dialog known is never the peer's word. Entries are made only
// from what a local phone sends, which the peer does not control:
//   - a request without a To tag (INVITE, SUBSCRIBE, ...): the phone's own
//     transaction, whose responses the peer then sends back (matched by
//     Call-ID and the phone's From tag);
//   - a provisional or success response to an INVITE or SUBSCRIBE (the
//     phone took the peer's request, which paid the flood limit): the peer
//     may CANCEL, ACK, or, once answered, use the dialog (matched by
//     Call-ID, the peer's From tag and the phone's To tag);
//   - a request with both tags (a re-INVITE, BYE, ...): a dialog the phone
//     is in, learnt again after the daemon restarted mid-call.
//
// The peer's messages only move a known entry on: a 2xx to the phone's
// INVITE confirms the dialog and pins the peer's tag, a final error or a
// BYE ends it (the entry stays for a transaction time, 32 s, so that the
// ACK, the retransmissions and the BYE's 200 pass too). A forged message
// that looks in-dialog gets through only if it names the Call-ID and the
// tags of a dialog a local phone is in, which only the other party of that
// dialog knows; and then it is under that dialog's own limit.
//
// The table is bounded: dialogSets sets of dialogWays entries. Each
// Call-ID has two candidate sets, chosen by a keyed hash of it (a
// per-Device random seed, so a sender cannot aim many Call-IDs at one
// set), and its entries live in either. A new entry takes a free or
// expired slot of the emptier of its two sets; if both are full, an entry
// of them moves to its own other set (or one of that set's entries to its
// other set: two steps, as cuckoo hashing does) to make room; only if none
// can, it takes the non-confirmed entry that expires first, else the
// confirmed dialog used least recently. With one set per Call-ID, 512
// entries overflowed a set and evicted a confirmed call from about 140
// calls on (half the time; from 60 in one case of a hundred); with two and
// the moves, 450 calls fit every time in simulation and tests
// (TestDialogTableHoldsCalls). Confirmed dialogs do not
// expire while in use; one idle for dialogIdle goes (a call whose BYE was
// never seen). Nothing is allocated per message: identifiers are kept as
// 64-bit keyed hashes.
const (
	dialogSets = 128
	dialogWays = 4
	// dialogRate and dialogBurst bound one dialog's messages from the
	// peer: a call's set-up with retransmissions is a dozen or so, a BYE
	// and its retransmissions a handful.
	dialogRate  = 10
	dialogBurst = 30
	// dialogEarly is how long an unanswered INVITE's entry lives without
	// news: a phone rings for up to three minutes (RFC 3261 Timer C).
	dialogEarly = 180e9
	// dialogTransaction is how long other unconfirmed entries and ended
	// dialogs live: 64*T1, the longest a transaction retransmits.
	dialogTransaction = 32e9
	// dialogIdle is how long a confirmed dialog lives without a message.
	// A call is silent in SIP while it lasts unless it uses session
	// timers, so this is long.
	dialogIdle = 12 * 3600e9
)

// Dialog states.
const (
	dlgFree uint8 = iota
	// dlgEarly: a transaction is under way, no dialog confirmed yet.
	dlgEarly
	// dlgConfirmed: a 2xx to an INVITE or SUBSCRIBE was seen.
	dlgConfirmed
	// dlgEnding: ended by a BYE or a final error; kept for the ACK and
	// retransmissions until expires.
	dlgEnding
)

// dialogEntry is one dialog or pending transaction. ours is the tag of the
// local phone's side (the From tag of what it sends, the To tag of what it
// answers), theirs the peer's; 0 is not yet known.
type dialogEntry struct {
	callID, ours, theirs uint64
	// used is when a message of the dialog was last seen, expires when it
	// goes (0 for a confirmed dialog: used + dialogIdle).
	used, expires int64
	// tokens and refilled are the dialog's own limit.
	tokens   float32
	refilled int64
	state    uint8
}

// dialogTable is the dialogs of one tunnel. Both directions use it, so it
// has its own lock, taken only for SIP messages.
type dialogTable struct {
	mu   sync.Mutex
	seed maphash.Seed
	// sets are made with the first entry (32 KB): a tunnel whose phones
	// are in no dialog keeps none, and a lookup finds nothing.
	sets *[dialogSets][dialogWays]dialogEntry
}

func (t *dialogTable) init() { t.seed = maphash.MakeSeed() }

// sipID is what identifies a message's dialog and transaction, read from
// the message as it is on the wire (Call-ID and tags are not rewritten).
// Hashes are 0 when the field is missing.
type sipID struct {
	callID, fromTag, toTag uint64
	// method is the request's method, or 0 for a response; cseq the
	// CSeq's method; status the response's code.
	method, cseq sipMethod
	status       int
}

type sipMethod uint8

const (
	mOther sipMethod = iota + 1
	mInvite
	mAck
	mBye
	mCancel
	mSubscribe
)

func methodOf(b []byte) sipMethod {
	switch string(b) {
	case "INVITE":
		return mInvite
	case "ACK":
		return mAck
	case "BYE":
		return mBye
	case "CANCEL":
		return mCancel
	case "SUBSCRIBE":
		return mSubscribe
	}
	return mOther
}

// dialogVerdict says what the flood limit makes of a message from the peer.
type dialogVerdict uint8

const (
	// dlgNew: not part of any dialog known here; the shared limit applies.
	dlgNew dialogVerdict = iota
	// dlgPass: part of a known dialog, within its own limit.
	dlgPass
	// dlgOverLimit: part of a known dialog, over its own limit.
	dlgOverLimit
)

// readID reads the dialog identifiers of the SIP message msg with
// sipmsg's reader, the one Rewrite runs on. ok is false when msg does not
// parse (Rewrite refuses it too), has no Call-ID or CSeq method, or holds a
// From, To, Call-ID or CSeq twice: such a message is never in a dialog. It
// does not allocate.
func (t *dialogTable) readID(msg []byte) (id sipID, ok bool) {
	p := parseSIP(msg)
	return t.idOf(&p)
}

// idOf is readID on a message the rewriter already parsed.
func (t *dialogTable) idOf(p *parsedSIP) (id sipID, ok bool) {
	if p.err != nil {
		return id, false
	}
	m := &p.msg
	line := m.StartLine()
	if len(line) >= len("SIP/2.0 ") && bytes.EqualFold(line[:len("SIP/2.0 ")], []byte("SIP/2.0 ")) {
		// Parse checked the three digits of the status.
		v := line[len("SIP/2.0 "):]
		id.status = int(v[0]-'0')*100 + int(v[1]-'0')*10 + int(v[2]-'0')
	} else {
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 {
			return id, false
		}
		id.method = methodOf(line[:sp])
	}
	var seenFrom, seenTo, seenCall bool
	fields := m.Fields()
	for {
		f, more := fields.Next()
		if !more {
			break
		}
		switch {
		case f.Is("call-id"):
			if seenCall {
				return id, false
			}
			seenCall = true
			id.callID = t.hash(dlgTrim(f.Value()))
		case f.Is("from"):
			if seenFrom {
				return id, false
			}
			seenFrom = true
			id.fromTag = t.hash(dlgTag(f.Value()))
		case f.Is("to"):
			if seenTo {
				return id, false
			}
			seenTo = true
			id.toTag = t.hash(dlgTag(f.Value()))
		case f.Is("cseq"):
			if id.cseq != 0 {
				return id, false
			}
			v := dlgTrim(f.Value())
			i := 0
			for i < len(v) && '0' <= v[i] && v[i] <= '9' {
				i++
			}
			if i == 0 || i == len(v) || v[i] != ' ' && v[i] != '\t' {
				return id, false
			}
			id.cseq = methodOf(dlgTrim(v[i:]))
		}
	}
	return id, id.callID != 0 && id.cseq != 0 && seenFrom && seenTo
}

// hash is the keyed hash of an identifier; 0 stands for none.
func (t *dialogTable) hash(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	return maphash.Bytes(t.seed, b) | 1
}

// setsOf returns the indices of callID's two candidate sets (the same
// one twice now and then).
func setsOf(callID uint64) (a, b int) {
	return int((callID >> 1) % dialogSets), int((callID >> 17) % dialogSets)
}

// otherSet is the candidate set of callID that is not s.
func otherSet(callID uint64, s int) int {
	a, b := setsOf(callID)
	if s == a {
		return b
	}
	return a
}

// lookup returns the first live entry of callID's two sets that match
// accepts.
func (t *dialogTable) lookup(callID uint64, match func(e *dialogEntry) bool) *dialogEntry {
	if t.sets == nil {
		return nil
	}
	a, b := setsOf(callID)
	for _, s := range [2]int{a, b} {
		set := &t.sets[s]
		for k := range set {
			if e := &set[k]; e.state != dlgFree && e.callID == callID && match(e) {
				return e
			}
		}
		if a == b {
			break
		}
	}
	return nil
}

// inbound decides on a message from the peer, and moves its dialog on.
func (t *dialogTable) inbound(id *sipID, now int64) dialogVerdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.matchInbound(id, now)
	if e == nil {
		return dlgNew
	}
	if !e.take(now) {
		return dlgOverLimit
	}
	e.used = now
	switch {
	case id.method == 0 && (id.cseq == mInvite || id.cseq == mSubscribe) && id.status >= 200 && id.status < 300:
		// The peer answered the phone's INVITE: the dialog is
		// confirmed, and the peer's tag is now part of it.
		if e.state == dlgEarly {
			e.state, e.theirs, e.expires = dlgConfirmed, id.toTag, 0
		}
	case id.method == 0 && id.cseq == mInvite && id.status >= 300:
		if e.state == dlgEarly {
			e.end(now)
		}
	case id.method == mBye:
		e.end(now)
	default:
		e.refresh(now)
	}
	return dlgPass
}

// matchInbound finds the entry a message from the peer belongs to.
func (t *dialogTable) matchInbound(id *sipID, now int64) *dialogEntry {
	if id.callID == 0 {
		return nil
	}
	return t.lookup(id.callID, func(e *dialogEntry) bool {
		if e.expired(now) {
			return false
		}
		if id.method == 0 {
			// A response to the phone's request carries the phone's tag
			// in From; once the dialog is confirmed, the peer's in To.
			return e.ours != 0 && id.fromTag == e.ours &&
				(e.state == dlgEarly || e.theirs == 0 || id.toTag == e.theirs)
		}
		// A request of the peer carries its tag in From and the phone's
		// in To. A CANCEL, and a retransmitted INVITE, carry no To tag:
		// they are known by the peer's tag, which the phone's answer
		// put in the entry.
		if e.theirs != 0 {
			return id.fromTag == e.theirs && (id.toTag == e.ours || id.toTag == 0 && e.state != dlgConfirmed || e.ours == 0)
		}
		// The phone's own INVITE or SUBSCRIBE, not answered yet: the
		// peer may already send requests in the early dialog (a NOTIFY
		// before the SUBSCRIBE's 200).
		return e.ours != 0 && id.toTag == e.ours
	})
}

// outbound learns from a message a local phone sent (after rewriting, as it
// goes on the wire).
func (t *dialogTable) outbound(id *sipID, now int64) {
	if id.callID == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if id.method != 0 {
		t.outboundRequest(id, now)
		return
	}
	t.outboundResponse(id, now)
}

func (t *dialogTable) outboundRequest(id *sipID, now int64) {
	if id.fromTag == 0 || id.method == mAck || id.method == mCancel {
		// An ACK or CANCEL belongs to a transaction the entry already
		// covers; without a From tag there is nothing to match
		// responses by.
		if e := t.find(id.callID, id.fromTag, id.toTag); e != nil {
			e.used = now
			e.refresh(now)
		}
		return
	}
	if id.toTag == 0 {
		// A new transaction outside a dialog: its responses come back
		// with the phone's From tag.
		e := t.find(id.callID, id.fromTag, 0)
		if e == nil {
			e = t.insert(id.callID, id.fromTag, 0, now)
			e.state = dlgEarly
		}
		e.used = now
		if e.state == dlgEarly {
			e.expires = now + dialogTransaction
			if id.method == mInvite {
				e.expires = now + dialogEarly
			}
		}
		return
	}
	// In a dialog: ours in From, theirs in To.
	e := t.find(id.callID, id.fromTag, id.toTag)
	if e == nil {
		e = t.insert(id.callID, id.fromTag, id.toTag, now)
		e.state, e.expires = dlgConfirmed, 0
	}
	e.used = now
	if e.theirs == 0 {
		e.theirs = id.toTag
	}
	if id.method == mBye {
		e.end(now)
	}
}

func (t *dialogTable) outboundResponse(id *sipID, now int64) {
	// The phone answers the peer: theirs in From, ours in To.
	e := t.findTheirs(id.callID, id.fromTag, id.toTag)
	creates := (id.cseq == mInvite || id.cseq == mSubscribe) && id.status > 100 && id.status < 300 && id.fromTag != 0
	if e == nil {
		if !creates {
			return
		}
		e = t.insert(id.callID, id.toTag, id.fromTag, now)
		e.state, e.expires = dlgEarly, now+dialogEarly
	}
	e.used = now
	if e.ours == 0 {
		e.ours = id.toTag
	}
	switch {
	case (id.cseq == mInvite || id.cseq == mSubscribe) && id.status >= 200 && id.status < 300:
		if e.state == dlgEarly {
			e.state, e.expires = dlgConfirmed, 0
		}
	case id.cseq == mInvite && id.status >= 300:
		if e.state == dlgEarly {
			e.end(now)
		}
	case id.cseq == mBye:
		e.end(now)
	default:
		e.refresh(now)
	}
}

// find returns the live entry of the phone's tag ours (and the peer's tag
// theirs, when both are known).
func (t *dialogTable) find(callID, ours, theirs uint64) *dialogEntry {
	return t.lookup(callID, func(e *dialogEntry) bool {
		return e.ours == ours && (theirs == 0 || e.theirs == 0 || e.theirs == theirs)
	})
}

// findTheirs returns the live entry of the peer's tag theirs (and the
// phone's tag ours, when both are known).
func (t *dialogTable) findTheirs(callID, theirs, ours uint64) *dialogEntry {
	if theirs == 0 {
		return nil
	}
	return t.lookup(callID, func(e *dialogEntry) bool {
		return e.theirs == theirs && (ours == 0 || e.ours == 0 || e.ours == ours)
	})
}

// insert takes a slot for a new entry: a free or expired one of the
// emptier of callID's two sets, else one made by moving entries to their
// other sets (makeRoom), else the unconfirmed entry that expires first,
// else the confirmed dialog used least recently.
func (t *dialogTable) insert(callID, ours, theirs uint64, now int64) *dialogEntry {
	if t.sets == nil {
		t.sets = new([dialogSets][dialogWays]dialogEntry)
	}
	a, b := setsOf(callID)
	slot := t.freeSlot(a, now)
	if b != a {
		if fb := t.freeSlot(b, now); fb != nil && (slot == nil || t.used(b, now) < t.used(a, now)) {
			slot = fb
		}
	}
	if slot == nil {
		slot = t.makeRoom(a, now)
	}
	if slot == nil && b != a {
		slot = t.makeRoom(b, now)
	}
	if slot == nil {
		for _, s := range [2]int{a, b} {
			for k := range t.sets[s] {
				e := &t.sets[s][k]
				switch {
				case slot == nil:
					slot = e
				case slot.state == dlgConfirmed && e.state != dlgConfirmed:
					slot = e
				case slot.state != dlgConfirmed && e.state != dlgConfirmed && e.expires < slot.expires:
					slot = e
				case slot.state == dlgConfirmed && e.state == dlgConfirmed && e.used < slot.used:
					slot = e
				}
			}
		}
	}
	*slot = dialogEntry{callID: callID, ours: ours, theirs: theirs, used: now, tokens: dialogBurst, refilled: now}
	return slot
}

// freeSlot returns a free or expired slot of set s, or nil.
func (t *dialogTable) freeSlot(s int, now int64) *dialogEntry {
	for k := range t.sets[s] {
		if e := &t.sets[s][k]; e.state == dlgFree || e.expired(now) {
			return e
		}
	}
	return nil
}

// used counts the live entries of set s.
func (t *dialogTable) used(s int, now int64) int {
	n := 0
	for k := range t.sets[s] {
		if e := &t.sets[s][k]; e.state != dlgFree && !e.expired(now) {
			n++
		}
	}
	return n
}

// makeRoom frees a slot of the full set s by moving one of its entries to
// that entry's other set, or, failing that, one entry of such another set
// on to its own other set first (two moves at most). It returns the slot
// freed in s, or nil if no move fits.
func (t *dialogTable) makeRoom(s int, now int64) *dialogEntry {
	for k := range t.sets[s] {
		e := &t.sets[s][k]
		o := otherSet(e.callID, s)
		if o == s {
			continue
		}
		if f := t.freeSlot(o, now); f != nil {
			*f = *e
			return e
		}
	}
	for k := range t.sets[s] {
		e := &t.sets[s][k]
		o := otherSet(e.callID, s)
		if o == s {
			continue
		}
		for j := range t.sets[o] {
			e2 := &t.sets[o][j]
			o2 := otherSet(e2.callID, o)
			if o2 == o || o2 == s {
				continue
			}
			if f := t.freeSlot(o2, now); f != nil {
				*f = *e2
				*e2 = *e
				return e
			}
		}
	}
	return nil
}

func (e *dialogEntry) expired(now int64) bool {
	if e.state == dlgConfirmed {
		return now-e.used > dialogIdle
	}
	return now > e.expires
}

// end keeps an ended dialog for the ACK and the retransmissions, counted
// from the first message that ended it.
func (e *dialogEntry) end(now int64) {
	if e.state != dlgEnding {
		e.state, e.expires = dlgEnding, now+dialogTransaction
	}
}

// refresh extends an unconfirmed entry that saw a message.
func (e *dialogEntry) refresh(now int64) {
	if e.state == dlgEarly {
		e.expires = max(e.expires, now+dialogTransaction)
	}
}

// take takes a token from the dialog's own limit.
func (e *dialogEntry) take(now int64) bool {
	if dt := now - e.refilled; dt > 0 {
		e.tokens = min(dialogBurst, e.tokens+float32(float64(dt)*dialogRate/1e9))
		e.refilled = now
	}
	if e.tokens < 1 {
		return false
	}
	e.tokens--
	return true
}

// count returns how many entries are live, by state (for the tests).
func (t *dialogTable) count(now int64) (early, confirmed, ending int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sets == nil {
		return 0, 0, 0
	}
	for s := range t.sets {
		for k := range t.sets[s] {
			e := &t.sets[s][k]
			if e.state == dlgFree || e.expired(now) {
				continue
			}
			switch e.state {
			case dlgEarly:
				early++
			case dlgConfirmed:
				confirmed++
			case dlgEnding:
				ending++
			}
		}
	}
	return early, confirmed, ending
}

// The value readers below are deliberately small: the tag of a From or To
// value and trimming. Anything they cannot read makes the message "not in
// a dialog", which is the limited path.

func dlgSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func dlgTrim(b []byte) []byte {
	for len(b) > 0 && dlgSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && dlgSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// dlgTag returns the tag parameter of a From or To value: among the
// parameters after the name-addr's '>', or after a bare URI. nil when there
// is none, or when quotes or angle brackets do not close.
func dlgTag(v []byte) []byte {
	params := v
	inQuote := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '<':
			j := i
			for j < len(v) && v[j] != '>' {
				j++
			}
			if j == len(v) {
				return nil
			}
			params = v[j+1:]
			i = len(v)
		}
	}
	if inQuote {
		return nil
	}
	for len(params) > 0 {
		semi := 0
		for semi < len(params) && params[semi] != ';' {
			semi++
		}
		if semi == len(params) {
			return nil
		}
		params = params[semi+1:]
		p := params
		for k, c := range p {
			if c == ';' {
				p = p[:k]
				break
			}
		}
		eq := 0
		for eq < len(p) && p[eq] != '=' {
			eq++
		}
		if eq < len(p) && bytes.EqualFold(dlgTrim(p[:eq]), []byte("tag")) {
			return dlgTrim(p[eq+1:])
		}
	}
	return nil
}
