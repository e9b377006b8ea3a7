package trunk

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/privacy"
	"github.com/peerline/peerline/pkg/rtprelay"
)

// call is one bridged call: the dialog that called us (in) and the one we
// placed (out), and the relay between their media.
type call struct {
	inID    string
	outID   string
	in      *sipgo.DialogServerSession
	out     *sipgo.DialogClientSession
	relay   *rtprelay.Relay
	cancel  context.CancelFunc
	endOnce sync.Once

	inSide, outSide rtprelay.Side
	// announce[s] is the relay address put in the SDP sent towards side
	// s; a re-offer passed on names the same one (the relay stays).
	announce [2]netip.AddrPort
	// up is set once both legs are answered: only then are re-offers
	// passed on.
	up atomic.Bool
	// offering is set while a re-offer is passed across: another one on
	// the call meanwhile gets 491 (RFC 3261 §14.2).
	offering atomic.Bool

	mu sync.Mutex
	// mu guards lastSDP: the SDP last sent towards each side, the
	// answer to an offerless re-INVITE (a session refresh).
	lastSDP [2][]byte
}

func (c *call) setSDP(s rtprelay.Side, body []byte) {
	c.mu.Lock()
	c.lastSDP[s] = body
	c.mu.Unlock()
}

func (c *call) sdp(s rtprelay.Side) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastSDP[s]
}

// ringTimeout bounds how long a call rings before it is given up.
const ringTimeout = 90 * time.Second

func header(req *sip.Request, name string) string {
	if h := req.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

func (t *Trunk) onInvite(l *sipLeg) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if l == &t.up {
			t.inboundCall(req, tx)
		} else {
			t.outboundCall(req, tx)
		}
	}
}

func respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string) {
	_ = tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil))
}

// inboundCall takes a call from the provider and rings a line.
func (t *Trunk) inboundCall(req *sip.Request, tx sip.ServerTransaction) {
	if t.inDialog(req, tx) {
		return
	}
	if src, err := netip.ParseAddrPort(req.Source()); err != nil || !t.fromProvider(src.Addr()) {
		// Not the provider: a scanner trying numbers. Not logged above
		// debug, as scanners send thousands.
		t.log.Debug("trunk: call from outside the provider refused", "src", req.Source())
		respond(req, tx, sip.StatusForbidden, "Forbidden")
		return
	}
	lines := t.cfg.Lines
	d := t.anonymousPolicy().Decide(privacy.Source{Kind: privacy.FromTrunk, Name: t.cfg.Name},
		privacy.Headers{From: header(req, "From"), Privacy: header(req, "Privacy")})
	log := t.log.With("dir", "in", "from", truncate(header(req, "From")))
	switch d.Action {
	case privacy.Refuse:
		log.Info("trunk: call refused", "reason", d.Reason)
		respond(req, tx, d.Code, "Anonymity Disallowed")
		return
	case privacy.Redirect:
		lines = []int{d.Line}
	}
	display, uri := privacy.ParseNameAddr(header(req, "From"))
	user := ""
	if d.Why == privacy.NotAnonymous {
		var u sip.Uri
		if sip.ParseUri(uri, &u) == nil {
			user = u.User
		}
	} else {
		display, user = "Anonymous", "anonymous"
	}
	var targets []sip.Uri
	for _, l := range lines {
		targets = append(targets, t.ring(l))
	}
	// The phone sees the caller at the trunk's phone-side address with
	// the trunk's prefix: calling back dials out through the trunk.
	cb := t.LocalURI(t.cfg.Prefix + user)
	if user == "" || user == "anonymous" {
		cb.User = "anonymous"
	}
	from := &sip.FromHeader{DisplayName: display, Address: cb, Params: sip.NewParams()}
	log.Info("trunk: incoming call", "lines", lines, "policy", d.Reason)
	t.bridge(req, tx, true, targets, from, nil, t.loc.addr.Addr(), log)
}

// outboundCall takes a call from a phone and places it at the provider.
func (t *Trunk) outboundCall(req *sip.Request, tx sip.ServerTransaction) {
	if t.inDialog(req, tx) {
		return
	}
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		respond(req, tx, sip.StatusBadRequest, "Bad Request")
		return
	}
	line := t.lineOf(src.Addr())
	if line == 0 {
		// Only the Pi's own phones may call out on the account.
		respond(req, tx, sip.StatusForbidden, "Not A Phone Of This Pi")
		return
	}
	dialled, withhold := t.opts.Withhold.Apply(line, req.Recipient.User)
	number, ok := t.cfg.Number(dialled)
	log := t.log.With("dir", "out", "line", line, "number", truncate(dialled))
	if !ok {
		log.Info("trunk: call refused: the number does not start with the trunk's prefix", "prefix", t.cfg.Prefix)
		respond(req, tx, sip.StatusNotFound, "Not Found")
		return
	}
	if st := t.Status(); st.State != Registered {
		// Most providers refuse unregistered calls anyway; say why.
		log.Info("trunk: call refused: not registered", "status", st.String())
		respond(req, tx, sip.StatusServiceUnavailable, "Trunk Not Registered")
		return
	}
	out := privacy.OutgoingHeaders(privacy.Identity{Display: t.cfg.CallerID,
		URI: "sip:" + t.cfg.User + "@" + t.cfg.SIPDomain()}, withhold)
	display, uri := privacy.ParseNameAddr(out.From)
	var fu sip.Uri
	if err := sip.ParseUri(uri, &fu); err != nil {
		respond(req, tx, sip.StatusInternalServerError, "Bad Caller ID")
		return
	}
	from := &sip.FromHeader{DisplayName: display, Address: fu, Params: sip.NewParams()}
	var extra []sip.Header
	if out.PPreferredIdentity != "" {
		extra = append(extra, sip.NewHeader("P-Preferred-Identity", out.PPreferredIdentity))
	}
	if out.Privacy != "" {
		extra = append(extra, sip.NewHeader("Privacy", out.Privacy))
	}
	target := sip.Uri{Scheme: "sip", User: number, Host: t.cfg.SIPDomain()}
	log.Info("trunk: outgoing call", "to", number, "withheld", withhold)
	t.bridge(req, tx, false, []sip.Uri{target}, from, extra, t.mediaAddr(), log)
}

// mediaAddr is the address put in SDP sent to the provider: our public
// address once the registrar told us, so that a provider without media
// latching can reach an endpoint-independent NAT mapping.
func (t *Trunk) mediaAddr() netip.Addr { return t.public().Addr() }

func (t *Trunk) ring(line int) sip.Uri {
	if t.opts.Ring != nil {
		return t.opts.Ring(line)
	}
	return sip.Uri{Scheme: "sip", User: strconv.Itoa(line), Host: numplan.Phone(0, uint8(line)).String()}
}

func (t *Trunk) lineOf(a netip.Addr) int {
	if t.opts.LineOf != nil {
		return t.opts.LineOf(a)
	}
	// Only a phone of this node, 10.0.s.1, is a line; a peer's phone
	// (10.i.s.1) never reaches this socket, and is no line of ours.
	s, _ := numplan.LocalPhone(a)
	return s
}

// bridge answers the incoming dialog by placing the outgoing one: the
// relay goes between their media, provisional answers are passed back,
// and the call ends when either side hangs up, the caller cancels, or the
// relay idles.
func (t *Trunk) bridge(req *sip.Request, tx sip.ServerTransaction, inbound bool, targets []sip.Uri,
	from *sip.FromHeader, extra []sip.Header, outMedia netip.Addr, log *slog.Logger) {
	inSide, outSide := rtprelay.Remote, rtprelay.Local
	inLeg, outLeg := &t.up, &t.loc
	if !inbound {
		inSide, outSide = rtprelay.Local, rtprelay.Remote
		inLeg, outLeg = &t.loc, &t.up
	}
	if len(req.Body()) > MaxSDP {
		respond(req, tx, sip.StatusRequestEntityTooLarge, "SDP Too Large")
		return
	}
	offerDest, ok := mediaDest(req.Body())
	if !ok {
		respond(req, tx, sip.StatusNotAcceptableHere, "Not Acceptable Here: want an SDP offer with IPv4 audio")
		return
	}
	relay, err := t.opts.Relays.Open()
	if err != nil {
		log.Warn("trunk: no media relay for the call", "err", err)
		respond(req, tx, sip.StatusServiceUnavailable, "No Media Relay Free")
		return
	}
	relay.SetDest(inSide, offerDest)
	in, err := inLeg.dua.ReadInvite(req, tx)
	if err != nil {
		relay.Close()
		respond(req, tx, sip.StatusBadRequest, "Bad Request")
		return
	}
	_ = in.Respond(sip.StatusTrying, "Trying", nil)

	ctx, cancel := context.WithCancel(context.Background())
	c := &call{inID: req.CallID().Value(), in: in, relay: relay, cancel: cancel, inSide: inSide, outSide: outSide}
	t.addCall(c.inID, c)

	outAP := relay.Addr(outSide)
	if outMedia.IsValid() {
		outAP = netip.AddrPortFrom(outMedia, outAP.Port())
	}
	c.announce[outSide] = outAP
	c.setSDP(outSide, relaySDP(req.Body(), outAP.Addr(), outAP.Port()))
	var reqs []*sip.Request
	for _, target := range targets {
		oreq := sip.NewRequest(sip.INVITE, target)
		f := &sip.FromHeader{DisplayName: from.DisplayName, Address: from.Address, Params: sip.NewParams()}
		f.Params.Add("tag", sip.GenerateTagN(16))
		oreq.AppendHeader(f)
		oreq.AppendHeader(&sip.ToHeader{Address: target, Params: sip.NewParams()})
		if inbound {
			oreq.AppendHeader(&sip.ContactHeader{Address: outLeg.dua.ContactHDR.Address})
		} else {
			oreq.AppendHeader(&sip.ContactHeader{Address: t.contactURI()})
			oreq.SetDestination(t.registrar)
		}
		for _, h := range extra {
			oreq.AppendHeader(h)
		}
		oreq.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		oreq.SetBody(relaySDP(req.Body(), outAP.Addr(), outAP.Port()))
		reqs = append(reqs, oreq)
	}

	// The caller's CANCEL (or its transaction dying) ends the attempt.
	ringCtx, ringCancel := context.WithTimeout(ctx, ringTimeout)
	defer ringCancel()
	go func() {
		select {
		case <-in.Context().Done():
			ringCancel()
		case <-ringCtx.Done():
		}
	}()
	// Branches answer from their own goroutines: the caller hears
	// ringing once, and never after the final answer (final below).
	var ringMu sync.Mutex
	rang, final := false, false
	answer := sipgo.AnswerOptions{OnResponse: func(r *sip.Response) error {
		if r.StatusCode == sip.StatusRinging || r.StatusCode == sip.StatusSessionInProgress {
			ringMu.Lock()
			if !rang && !final {
				rang = true
				_ = in.Respond(sip.StatusRinging, "Ringing", nil)
			}
			ringMu.Unlock()
		}
		return nil
	}}
	if !inbound {
		answer.Username, answer.Password = t.cfg.DigestUser(), t.cfg.Password
	}
	out, err := fork(ringCtx, outLeg, reqs, answer)
	ringMu.Lock()
	final = true
	ringMu.Unlock()
	if err == nil {
		c.out = out
		c.outID = out.InviteRequest.CallID().Value()
		t.addCall(c.outID, c)
	}
	if err != nil {
		code, reason := sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"
		var de *sipgo.ErrDialogResponse
		if errors.As(err, &de) {
			code, reason = de.Res.StatusCode, de.Res.Reason
		}
		log.Info("trunk: call not answered", "code", code, "err", err)
		if in.Context().Err() == nil {
			_ = in.Respond(code, reason, nil)
		}
		t.end(c, nil)
		return
	}
	if err := out.Ack(ctx); err != nil {
		log.Warn("trunk: sending ACK", "err", err)
	}
	res := out.InviteResponse
	ansDest, ok := mediaDest(res.Body())
	if !ok {
		log.Warn("trunk: answer without IPv4 audio; hanging up")
		_ = in.Respond(sip.StatusNotAcceptableHere, "Not Acceptable Here", nil)
		t.end(c, nil)
		return
	}
	relay.SetDest(outSide, ansDest)
	inAP := relay.Addr(inSide)
	var contact sip.Uri
	if inbound {
		inAP = netip.AddrPortFrom(t.mediaAddr(), inAP.Port())
		contact = t.contactURI()
	} else {
		contact = inLeg.dua.ContactHDR.Address
	}
	c.announce[inSide] = inAP
	c.setSDP(inSide, relaySDP(res.Body(), inAP.Addr(), inAP.Port()))
	// Up before the 200 leaves: the caller may re-INVITE as soon as it
	// has it.
	c.up.Store(true)
	err = in.Respond(sip.StatusOK, "OK", c.sdp(inSide),
		sip.NewHeader("Content-Type", "application/sdp"), &sip.ContactHeader{Address: contact})
	if err != nil {
		log.Warn("trunk: answering the caller", "err", err)
		t.end(c, nil)
		return
	}
	log.Info("trunk: call up", "relay_in", relay.Addr(inSide), "relay_out", relay.Addr(outSide))
	go func() {
		err := relay.Run(ctx)
		if errors.Is(err, rtprelay.ErrIdle) {
			log.Info("trunk: no media for a minute; hanging up both sides")
		}
		t.end(c, nil)
	}()
}

// errLost is a branch answered just after another: hung up at once.
var errLost = errors.New("answered after another line")

// fork places the outgoing call to every request's target at once (the
// lines of an incoming call ring together): the first to answer gets
// the call, the others are cancelled, and one that answered at the same
// moment is hung up. With every branch failed, the most telling answer
// is returned: a refusal (busy, declined) over a cancellation or a
// timeout.
func fork(ctx context.Context, leg *sipLeg, reqs []*sip.Request, opts sipgo.AnswerOptions) (*sipgo.DialogClientSession, error) {
	type result struct {
		i   int
		s   *sipgo.DialogClientSession
		err error
	}
	results := make(chan result, len(reqs))
	cancels := make([]context.CancelFunc, len(reqs))
	var won atomic.Bool
	for i, r := range reqs {
		bctx, cancel := context.WithCancel(ctx)
		cancels[i] = cancel
		go func() {
			s, err := leg.dua.WriteInvite(bctx, r)
			if err == nil {
				err = s.WaitAnswer(bctx, opts)
			}
			if err == nil && !won.CompareAndSwap(false, true) {
				hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = s.Ack(hctx)
				_ = s.Bye(hctx)
				hcancel()
				err = errLost
			}
			results <- result{i, s, err}
		}()
	}
	var best error
	for range reqs {
		r := <-results
		if r.err == nil {
			for j, cancel := range cancels {
				if j != r.i {
					cancel()
				}
			}
			return r.s, nil
		}
		cancels[r.i]()
		var de *sipgo.ErrDialogResponse
		if errors.As(r.err, &de) && de.Res.StatusCode != sip.StatusRequestTerminated || best == nil {
			best = r.err
		}
	}
	return nil, best
}

// inDialog takes an INVITE within a dialog (a re-INVITE): passed on if
// it is one of our calls' (reoffer), else 481; it says whether req was
// one.
func (t *Trunk) inDialog(req *sip.Request, tx sip.ServerTransaction) bool {
	if c := t.lookup(req.CallID().Value()); c != nil {
		t.reoffer(c, req, tx)
		return true
	}
	if to := req.To(); to != nil && to.Params.Has("tag") {
		respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return true
	}
	return false
}

// onUpdate takes an UPDATE, which exists only within a dialog.
func (t *Trunk) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	if !t.inDialog(req, tx) {
		respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
	}
}

// dialogSide is what reoffer needs of either leg's sipgo dialog.
type dialogSide interface {
	ReadRequest(*sip.Request, sip.ServerTransaction) error
	Do(context.Context, *sip.Request) (*sip.Response, error)
	WriteRequest(*sip.Request) error
}

// reofferTimeout bounds the wait for the other side's answer to a
// re-offer: an INVITE client transaction's own limit, 64*T1 (T1 = 500 ms).
const reofferTimeout = 32 * time.Second

// reoffer passes a re-INVITE or an UPDATE (hold, resume, session
// refresh, codec change) to the other leg of the call, within that
// leg's dialog, with the SDP pointing at the relay's socket for that
// leg; the answer comes back the same way. Direction attributes
// (a=sendonly, recvonly, inactive) and codecs pass unchanged; the relay
// stays the same, so its latched sides keep forwarding. A refusal from
// the other side is passed back and the call goes on as it was (RFC 3261
// §14.1). Offers that cannot be relayed (no IPv4 audio) get 488 and the
// call goes on. A re-INVITE without SDP (a session refresh asking for an
// offer) is answered here with the SDP last sent to that side, unchanged
// (same o= version), and not passed on; its ACK's answer is not read, as
// the relay's latching follows the media anyway.
func (t *Trunk) reoffer(c *call, req *sip.Request, tx sip.ServerTransaction) {
	if !c.up.Load() || c.out == nil {
		// The call is still being set up: RFC 3261 §14.2 asks for 500
		// with a Retry-After.
		res := sip.NewResponseFromRequest(req, sip.StatusInternalServerError, "Call Not Set Up Yet", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", "1"))
		_ = tx.Respond(res)
		return
	}
	fromIn := req.CallID().Value() == c.inID
	var from, to dialogSide = c.in, c.out
	fromSide, toSide := c.inSide, c.outSide
	target := c.out.InviteRequest.Recipient
	if ct := c.out.InviteResponse.Contact(); ct != nil {
		target = ct.Address
	}
	if !fromIn {
		from, to = c.out, c.in
		fromSide, toSide = c.outSide, c.inSide
		target = c.in.InviteRequest.Recipient
		if ct := c.in.InviteRequest.Contact(); ct != nil {
			target = ct.Address
		}
	}
	if err := from.ReadRequest(req, tx); err != nil {
		respond(req, tx, sip.StatusInternalServerError, "CSeq Out Of Order")
		return
	}
	if !c.offering.CompareAndSwap(false, true) {
		respond(req, tx, sip.StatusRequestPending, "Request Pending")
		return
	}
	// The pending mark goes before the final answer leaves (every way
	// out below answers through reply): the sender may send its next
	// re-INVITE as soon as it has the answer.
	reply := func(res *sip.Response) error {
		c.offering.Store(false)
		return tx.Respond(res)
	}
	refuse := func(code int, reason string) {
		_ = reply(sip.NewResponseFromRequest(req, code, reason, nil))
	}
	log := t.log.With("call", truncate(c.inID), "method", string(req.Method), "from", fromSide.String())
	contact := sip.ContactHeader{Address: t.loc.dua.ContactHDR.Address}
	if fromSide == rtprelay.Remote {
		contact.Address = t.contactURI()
	}
	if len(req.Body()) == 0 {
		var body []byte
		var hdrs []sip.Header
		if req.IsInvite() {
			body = c.sdp(fromSide)
			hdrs = append(hdrs, sip.NewHeader("Content-Type", "application/sdp"))
		}
		res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", body)
		for _, h := range append(hdrs, &contact) {
			res.AppendHeader(h)
		}
		_ = reply(res)
		log.Debug("trunk: session refresh answered here")
		return
	}
	if len(req.Body()) > MaxSDP {
		refuse(sip.StatusRequestEntityTooLarge, "SDP Too Large")
		return
	}
	offerDest, ok := mediaDest(req.Body())
	if !ok {
		// The relay carries IPv4 audio only: the call goes on as it was.
		refuse(sip.StatusNotAcceptableHere, "Not Acceptable Here: want an SDP offer with IPv4 audio")
		return
	}
	offer := relayFor(req.Body(), offerDest, c.announce[toSide])
	oreq := sip.NewRequest(req.Method, target)
	oreq.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	oreq.SetBody(offer)
	ctx, cancel := context.WithTimeout(context.Background(), reofferTimeout)
	defer cancel()
	res, err := to.Do(ctx, oreq)
	if err != nil {
		log.Info("trunk: re-offer not answered by the other side", "err", err)
		refuse(sip.StatusRequestTimeout, "Request Timeout")
		return
	}
	if req.IsInvite() && res.IsSuccess() {
		ack := sip.NewRequest(sip.ACK, target)
		ack.AppendHeader(&sip.CSeqHeader{SeqNo: oreq.CSeq().SeqNo, MethodName: sip.ACK})
		if err := to.WriteRequest(ack); err != nil {
			log.Warn("trunk: sending ACK for the re-INVITE", "err", err)
		}
	}
	if !res.IsSuccess() {
		log.Info("trunk: re-offer refused by the other side", "code", res.StatusCode)
		refuse(res.StatusCode, res.Reason)
		return
	}
	ansDest, ok := mediaDest(res.Body())
	if !ok {
		// The other side took the offer but its answer cannot be
		// relayed; the caller keeps the session it had.
		log.Warn("trunk: answer to a re-offer without IPv4 audio")
		refuse(sip.StatusNotAcceptableHere, "Not Acceptable Here")
		return
	}
	answer := relayFor(res.Body(), ansDest, c.announce[fromSide])
	c.setSDP(toSide, offer)
	c.setSDP(fromSide, answer)
	// Only moves a side that has not latched yet: see rtprelay.SetDest.
	if !offerDest.Addr().IsUnspecified() {
		c.relay.SetDest(fromSide, offerDest)
	}
	if !ansDest.Addr().IsUnspecified() {
		c.relay.SetDest(toSide, ansDest)
	}
	out := sip.NewResponseFromRequest(req, res.StatusCode, res.Reason, answer)
	out.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	out.AppendHeader(&contact)
	if err := reply(out); err != nil {
		log.Warn("trunk: answering a re-offer", "err", err)
		return
	}
	log.Info("trunk: re-offer passed on", "code", res.StatusCode)
}

// relayFor rewrites an SDP for the relay socket at ap. An old-style hold
// (c=0.0.0.0, RFC 2543) stays 0.0.0.0, so that the other side still
// reads it as hold.
func relayFor(body []byte, dest, ap netip.AddrPort) []byte {
	addr := ap.Addr()
	if dest.Addr().IsUnspecified() {
		addr = dest.Addr()
	}
	return relaySDP(body, addr, ap.Port())
}

func (t *Trunk) onAck(req *sip.Request, tx sip.ServerTransaction) {
	if c := t.lookup(req.CallID().Value()); c != nil && c.in != nil && req.CallID().Value() == c.inID {
		_ = c.in.ReadAck(req, tx)
	}
}

func (t *Trunk) onBye(req *sip.Request, tx sip.ServerTransaction) {
	id := req.CallID().Value()
	c := t.lookup(id)
	if c == nil {
		respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	if id == c.inID {
		if err := c.in.ReadBye(req, tx); err != nil {
			respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
			return
		}
	} else {
		if err := c.out.ReadBye(req, tx); err != nil {
			respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
			return
		}
	}
	t.log.Info("trunk: call ended", "by", map[bool]string{true: "caller", false: "callee"}[id == c.inID], "media", c.relay.Stats().Forwarded)
	t.end(c, req)
}

// end hangs up whichever side is still up (not the one whose BYE is
// bye), stops the relay and forgets the call. Idempotent.
func (t *Trunk) end(c *call, bye *sip.Request) {
	c.endOnce.Do(func() {
		byeID := ""
		if bye != nil {
			byeID = bye.CallID().Value()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if c.out != nil && byeID != c.outID && c.out.LoadState() >= sip.DialogStateEstablished && c.out.LoadState() != sip.DialogStateEnded {
			_ = c.out.Bye(ctx)
		}
		if byeID != c.inID && c.in.LoadState() >= sip.DialogStateEstablished && c.in.LoadState() != sip.DialogStateEnded {
			_ = c.in.Bye(ctx)
		}
		c.cancel()
		c.relay.Close()
		t.mu.Lock()
		delete(t.calls, c.inID)
		if c.outID != "" {
			delete(t.calls, c.outID)
		}
		t.mu.Unlock()
	})
}

func (t *Trunk) hangupAll() {
	t.mu.Lock()
	calls := t.uniqueCallsLocked()
	t.mu.Unlock()
	for _, c := range calls {
		t.end(c, nil)
	}
}

func (t *Trunk) uniqueCallsLocked() []*call {
	var out []*call
	seen := map[*call]bool{}
	for _, c := range t.calls {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

func (t *Trunk) addCall(id string, c *call) {
	t.mu.Lock()
	t.calls[id] = c
	t.mu.Unlock()
}

func (t *Trunk) lookup(id string) *call {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.calls[id]
}

// truncate bounds what a hostile header puts in the log.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80]
	}
	return s
}
