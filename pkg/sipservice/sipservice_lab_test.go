//go:build linux && lab

package sipservice

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/dialplan"
	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/registrar"
	"github.com/peerline/peerline/pkg/sipauth"
)

// Two real softphones on two lines of one Pi: line 1 registers and dials
// "2"; the Pi redirects, and the phones talk directly.
func TestDialLocalLineByNumber(t *testing.T) {
	labtest.RequireRoot(t)
	l := labtest.New(t)
	pi, err := l.Host("pi")
	if err != nil {
		t.Fatal(err)
	}
	var phones [3]*lab.Host
	for s := 1; s <= 2; s++ {
		h, err := l.Host("line" + string(rune('0'+s)))
		if err != nil {
			t.Fatal(err)
		}
		phones[s] = h
		pif := "p" + string(rune('0'+s))
		if err := l.Veth(pi, pif, h, "eth0"); err != nil {
			t.Fatal(err)
		}
		gw := netip.AddrFrom4([4]byte{10, 0, byte(s), 2})
		if err := pi.Addr(pif, gw.String()+"/30"); err != nil {
			t.Fatal(err)
		}
		if err := h.Addr("eth0", netip.AddrFrom4([4]byte{10, 0, byte(s), 1}).String()+"/30"); err != nil {
			t.Fatal(err)
		}
		if err := h.Route("default", "via", gw.String()); err != nil {
			t.Fatal(err)
		}
	}
	if err := pi.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}

	// MD5 alone: baresip 1.0 cannot answer SHA-256 (TestBaresipRegisters
	// covers how the registrar learns that), and this test is about dialling.
	reg := registrar.New(sipauth.Config{Realm: "home", Offer: sipauth.MD5}, func(user string) (int, string, bool) {
		if user == "1" {
			return 1, "pw1", true
		}
		return 0, "", false
	}, l.Logger())
	svc := &Service{Registrar: reg, Log: l.Logger(), Routes: func() (*dialplan.Plan, dialplan.Env) {
		return nil, dialplan.Env{Lines: 2}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	var done []chan error
	for s := 1; s <= 2; s++ {
		conn, err := pi.ListenPacket("udp4", netip.AddrFrom4([4]byte{10, 0, byte(s), 2}).String()+":5060")
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan error, 1)
		done = append(done, ch)
		go func() { ch <- svc.Serve(ctx, conn) }()
	}
	defer func() {
		cancel()
		for _, ch := range done {
			if err := <-ch; err != nil {
				t.Error(err)
			}
		}
	}()

	caller, err := l.Phone(ctx, phones[1], lab.PhoneOpts{Addr: "10.0.1.1", User: "1", Registrar: "10.0.1.2", Password: "pw1"})
	if err != nil {
		t.Fatal(err)
	}
	callee, err := l.Phone(ctx, phones[2], lab.PhoneOpts{Addr: "10.0.2.1", User: "2", AutoAnswer: true})
	if err != nil {
		t.Fatal(err)
	}
	// baresip may register before its control channel is up, so its
	// REGISTER_OK can come before anyone listens: ask the registrar.
	for {
		if _, ok := reg.Lookup(1); ok {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("line 1 never registered (phone events %v)", caller.Events())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := caller.Dial(ctx, "sip:2@10.0.1.2"); err != nil {
		t.Fatal(err)
	}
	ev, err := callee.WaitEstablished(ctx)
	if err != nil {
		t.Fatalf("line 2 never answered a call to \"2\": %v (caller events %v)", err, caller.Events())
	}
	t.Logf("line 2 answered a call from %s", ev.PeerURI)
	if _, err := caller.WaitEstablished(ctx); err != nil {
		t.Fatal(err)
	}

	// A number nobody has is refused at once with 404, not rung.
	if err := caller.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := caller.WaitClosed(ctx); err != nil {
		t.Fatal(err)
	}
	if err := caller.Dial(ctx, "sip:9*1@10.0.1.2"); err != nil {
		t.Fatal(err)
	}
	closed, err := caller.WaitClosed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dialling 9*1: %s", closed.Param)
}
