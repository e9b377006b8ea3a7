package trunk

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/rtprelay"
)

// inDialogReq is a request that arrived within a dialog, with its
// transaction, for the test to answer.
type inDialogReq struct {
	req *sip.Request
	tx  sip.ServerTransaction
}

// holdCall is an outgoing call up through the trunk on loopback, set up
// as in TestOutgoingWithheldCall: the phone's dialog (phone), the
// provider's (prov), the relay addresses each side was given, and the
// re-INVITEs each side receives.
type holdCall struct {
	phone, prov           dialogLeg
	phoneMedia, provMedia *net.UDPConn
	relayLocal            netip.AddrPort // the relay as the phone knows it
	relayRemote           netip.AddrPort // the relay as the provider knows it
}

type dialogLeg struct {
	d interface {
		Do(context.Context, *sip.Request) (*sip.Response, error)
	}
	write  func(*sip.Request) error
	target sip.Uri
	reinvs chan inDialogReq
}

func sdpWith(port uint16, attr string) []byte {
	return fmt.Appendf(nil, "v=0\r\no=- 1 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=%s\r\n", port, attr)
}

func newHoldCall(t *testing.T) *holdCall {
	t.Helper()
	log := labtest.Logger(t)
	hc := &holdCall{phoneMedia: udpConn(t), provMedia: udpConn(t)}
	provReinvs := make(chan inDialogReq, 2)
	provSess := make(chan *sipgo.DialogServerSession, 1)
	regAddr, _ := provider(t, func(l *sipLeg) {
		l.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			if req.To().Params.Has("tag") {
				provReinvs <- inDialogReq{req, tx}
				<-tx.Done()
				return
			}
			s, err := l.dua.ReadInvite(req, tx)
			if err != nil {
				t.Error(err)
				return
			}
			provSess <- s
			s.RespondSDP(sdpWith(hc.provMedia.LocalAddr().(*net.UDPAddr).AddrPort().Port(), "sendrecv"))
		})
		l.srv.OnUpdate(func(req *sip.Request, tx sip.ServerTransaction) {
			provReinvs <- inDialogReq{req, tx}
			<-tx.Done()
		})
		l.srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
		l.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
			tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
		})
	})
	cfg := Config{Name: "prov", Registrar: regAddr, Domain: "provider.test", User: "4930123", Password: "secret",
		Lines: []int{1}, Prefix: "0"}
	tr, err := New(Options{
		Config: cfg, Uplink: listen(t), Phones: listen(t),
		Relays: &rtprelay.Pool{Listen: net.ListenPacket, LocalAddr: netip.MustParseAddr("127.0.0.1"),
			RemoteAddr: netip.MustParseAddr("127.0.0.1"), PortLo: 44000, PortHi: 44999, Max: 4},
		LineOf: func(netip.Addr) int { return 1 },
		Log:    log,
	})
	if err != nil {
		t.Fatal(err)
	}
	labtest.Serve(t, tr.Run)
	waitState(t, tr, Registered)

	phoneConn := listen(t)
	phone, err := newLeg(phoneConn, "phone", log)
	if err != nil {
		t.Fatal(err)
	}
	phoneReinvs := make(chan inDialogReq, 2)
	phone.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		phoneReinvs <- inDialogReq{req, tx}
		<-tx.Done()
	})
	phone.srv.OnUpdate(func(req *sip.Request, tx sip.ServerTransaction) {
		phoneReinvs <- inDialogReq{req, tx}
		<-tx.Done()
	})
	phone.srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	phone.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	go phone.srv.ServeUDP(phoneConn)
	t.Cleanup(func() { phoneConn.Close(); phone.ua.Close() })
	for {
		if _, err := phone.ua.TransportLayer().GetConnection("udp", phone.addr.String()); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	req := sip.NewRequest(sip.INVITE, tr.CallURI("0301234", false))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(sdpWith(hc.phoneMedia.LocalAddr().(*net.UDPAddr).AddrPort().Port(), "sendrecv"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := phone.dua.WriteInvite(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("the call was not answered: %v", err)
	}
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	ps := <-provSess
	var ok bool
	if hc.relayLocal, ok = mediaDest(sess.InviteResponse.Body()); !ok {
		t.Fatal("the phone's answer names no relay")
	}
	if hc.relayRemote, ok = mediaDest(ps.InviteRequest.Body()); !ok {
		t.Fatal("the provider's offer names no relay")
	}
	hc.phone = dialogLeg{d: sess, write: sess.WriteRequest, target: sess.InviteResponse.Contact().Address, reinvs: phoneReinvs}
	hc.prov = dialogLeg{d: ps, write: ps.WriteRequest, target: ps.InviteRequest.Contact().Address, reinvs: provReinvs}
	return hc
}

// reinvite sends a re-INVITE with body from l, ACKs a 2xx, and returns the
// final response.
func (l dialogLeg) reinvite(t *testing.T, body []byte) (*sip.Response, error) {
	return l.reoffer(t, sip.INVITE, body)
}

// reoffer sends a re-INVITE or an UPDATE.
func (l dialogLeg) reoffer(t *testing.T, method sip.RequestMethod, body []byte) (*sip.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := sip.NewRequest(method, l.target)
	if len(body) > 0 {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	req.SetBody(body)
	res, err := l.d.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if method == sip.INVITE && res.IsSuccess() {
		ack := sip.NewRequest(sip.ACK, l.target)
		ack.AppendHeader(&sip.CSeqHeader{SeqNo: req.CSeq().SeqNo, MethodName: sip.ACK})
		if err := l.write(ack); err != nil {
			t.Errorf("ACK: %v", err)
		}
	}
	return res, nil
}

func (l dialogLeg) next(t *testing.T) inDialogReq {
	t.Helper()
	select {
	case r := <-l.reinvs:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no re-INVITE arrived")
		return inDialogReq{}
	}
}

func answer(r inDialogReq, body []byte) {
	res := sip.NewResponseFromRequest(r.req, sip.StatusOK, "OK", body)
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	_ = r.tx.Respond(res)
}

// checkSDP: body points at want and carries attr.
func checkSDP(t *testing.T, who string, body []byte, want netip.AddrPort, attr string) {
	t.Helper()
	if got, ok := mediaDest(body); !ok || got != want {
		t.Errorf("%s got media at %v (%v), want the relay's %v", who, got, ok, want)
	}
	if !strings.Contains(string(body), "\r\na="+attr+"\r\n") {
		t.Errorf("%s got SDP without a=%s:\n%s", who, attr, body)
	}
}

func port(c *net.UDPConn) uint16 { return c.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

// A phone puts an outside call on hold and takes it back, and the
// provider does the same (by re-INVITE, then by UPDATE): each re-INVITE reaches the other side with the
// relay's address for that side and its direction attribute, the answer
// comes back the same way, and media still flows through the same relay.
func TestReinviteHold(t *testing.T) {
	hc := newHoldCall(t)
	for _, step := range []struct {
		name     string
		method   sip.RequestMethod
		from, to dialogLeg
		fromAP   netip.AddrPort // the relay as the sender knows it
		toAP     netip.AddrPort // the relay as the receiver knows it
		offer    string
		answer   string
		fromPort uint16
		toPort   uint16
	}{
		{"phone holds", sip.INVITE, hc.phone, hc.prov, hc.relayLocal, hc.relayRemote, "sendonly", "recvonly", port(hc.phoneMedia), port(hc.provMedia)},
		{"phone resumes", sip.INVITE, hc.phone, hc.prov, hc.relayLocal, hc.relayRemote, "sendrecv", "sendrecv", port(hc.phoneMedia), port(hc.provMedia)},
		{"provider holds", sip.INVITE, hc.prov, hc.phone, hc.relayRemote, hc.relayLocal, "sendonly", "recvonly", port(hc.provMedia), port(hc.phoneMedia)},
		{"provider resumes", sip.INVITE, hc.prov, hc.phone, hc.relayRemote, hc.relayLocal, "sendrecv", "sendrecv", port(hc.provMedia), port(hc.phoneMedia)},
		{"phone holds by UPDATE", sip.UPDATE, hc.phone, hc.prov, hc.relayLocal, hc.relayRemote, "sendonly", "recvonly", port(hc.phoneMedia), port(hc.provMedia)},
		{"provider resumes by UPDATE", sip.UPDATE, hc.prov, hc.phone, hc.relayRemote, hc.relayLocal, "sendrecv", "sendrecv", port(hc.provMedia), port(hc.phoneMedia)},
	} {
		type result struct {
			res *sip.Response
			err error
		}
		done := make(chan result, 1)
		go func() {
			res, err := step.from.reoffer(t, step.method, sdpWith(step.fromPort, step.offer))
			done <- result{res, err}
		}()
		var r inDialogReq
		select {
		case r = <-step.to.reinvs:
		case got := <-done:
			t.Fatalf("%s: re-INVITE ended with %v %v before the other side saw it", step.name, got.res, got.err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the re-INVITE never reached the other side", step.name)
		}
		if r.req.Method != step.method {
			t.Errorf("%s: the other side got %s, want %s", step.name, r.req.Method, step.method)
		}
		checkSDP(t, step.name+": the receiver", r.req.Body(), step.toAP, step.offer)
		answer(r, sdpWith(step.toPort, step.answer))
		got := <-done
		if got.err != nil || got.res.StatusCode != sip.StatusOK {
			t.Fatalf("%s: re-INVITE: %v %v, want 200", step.name, got.res, got.err)
		}
		checkSDP(t, step.name+": the sender", got.res.Body(), step.fromAP, step.answer)
	}
	// The relay is the one the call started with, still forwarding.
	send(t, hc.phoneMedia, hc.relayLocal, "rtp after resume")
	got, src := recv(t, hc.provMedia)
	if got != "rtp after resume" || src != hc.relayRemote {
		t.Fatalf("provider media got %q from %v, want it from the relay %v", got, src, hc.relayRemote)
	}
	send(t, hc.provMedia, hc.relayRemote, "rtp back")
	if got, _ := recv(t, hc.phoneMedia); got != "rtp back" {
		t.Fatalf("phone media got %q", got)
	}
}

// A refusal from the other side comes back to the sender, a re-INVITE
// while one is being passed across the call gets 491, and a session
// refresh without SDP is answered by the trunk.
func TestReinviteRefusedAndOverlap(t *testing.T) {
	hc := newHoldCall(t)
	done := make(chan *sip.Response, 1)
	go func() {
		res, err := hc.phone.reinvite(t, sdpWith(port(hc.phoneMedia), "sendonly"))
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	held := hc.prov.next(t)
	// The provider's own re-INVITE meets the phone's, still pending.
	res, err := hc.prov.reinvite(t, sdpWith(port(hc.provMedia), "sendonly"))
	if err != nil || res.StatusCode != sip.StatusRequestPending {
		t.Fatalf("overlapping re-INVITE: %v %v, want 491", res, err)
	}
	_ = held.tx.Respond(sip.NewResponseFromRequest(held.req, sip.StatusNotAcceptableHere, "Not Here", nil))
	if res := <-done; res == nil || res.StatusCode != sip.StatusNotAcceptableHere {
		t.Fatalf("the phone got %v, want the provider's 488", res)
	}
	// The call goes on: the next re-INVITE passes.
	go func() {
		res, err := hc.prov.reinvite(t, sdpWith(port(hc.provMedia), "inactive"))
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	r := hc.phone.next(t)
	checkSDP(t, "the phone", r.req.Body(), hc.relayLocal, "inactive")
	answer(r, sdpWith(port(hc.phoneMedia), "inactive"))
	if res := <-done; res == nil || res.StatusCode != sip.StatusOK {
		t.Fatalf("the provider got %v, want 200", res)
	}
	// A session refresh without SDP is answered by the trunk with what it
	// last sent the phone (the inactive offer), and not passed on.
	res, err = hc.phone.reinvite(t, nil)
	if err != nil || res.StatusCode != sip.StatusOK {
		t.Fatalf("offerless re-INVITE: %v %v, want 200", res, err)
	}
	checkSDP(t, "the phone's refresh", res.Body(), hc.relayLocal, "inactive")
	select {
	case r := <-hc.prov.reinvs:
		t.Errorf("the provider got the refresh: %s", r.req.StartLine())
	case <-time.After(200 * time.Millisecond):
	}
}
