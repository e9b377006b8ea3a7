//go:build linux && lab

package registrar

import (
	"context"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/sipauth"
)

// A real softphone (Debian's baresip) registers to the registrar on its
// line's Pi address with digest authentication, as a provisioned desk
// phone does; a wrong password is refused and binds nothing.
func TestBaresipRegisters(t *testing.T) {
	labtest.RequireRoot(t)
	l := labtest.New(t)
	pi, err := l.Host("pi")
	if err != nil {
		t.Fatal(err)
	}
	desk, err := l.Host("desk")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(pi, "p1", desk, "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		h      *lab.Host
		ifname string
		cidr   string
	}{{pi, "p1", "10.0.1.2/24"}, {desk, "eth0", "10.0.1.1/24"}, {desk, "eth0", "10.0.1.3/24"}} {
		if err := a.h.Addr(a.ifname, a.cidr); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pi.ListenPacket("udp4", "10.0.1.2:5060")
	if err != nil {
		t.Fatal(err)
	}
	// The default offer, SHA-256 then MD5. baresip 1.0 fails a 401 that
	// names SHA-256 anywhere and tries again only 30-60 s later; the
	// registrar knows it by its User-Agent and offers it MD5 alone, so it
	// registers at its first try, well within the budget.
	r := New(sipauth.Config{Realm: "alice"}, accounts, l.Logger())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, r, conn) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	start := time.Now()
	good, err := l.Phone(ctx, desk, lab.PhoneOpts{Addr: "10.0.1.1", User: "1", Registrar: "10.0.1.2", Password: "pw-line-one"})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := l.Phone(ctx, desk, lab.PhoneOpts{Addr: "10.0.1.3", CtrlPort: 4445, User: "2", Registrar: "10.0.1.2", Password: "guess"})
	if err != nil {
		t.Fatal(err)
	}
	// baresip may register before its control channel is up, so its
	// REGISTER_OK can come before anyone listens: ask the registrar. A
	// phone that failed its first try would come back only after 30 s,
	// past the context's budget.
	for {
		if _, ok := r.Lookup(1); ok {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("baresip with the right password never registered (phone events %v)", good.Events())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Logf("registered %v after the phone was started", time.Since(start).Round(time.Millisecond))
	b, ok := r.Lookup(1)
	if !ok || b.Source.Addr().String() != "10.0.1.1" {
		t.Fatalf("binding of line 1: %+v %v", b, ok)
	}
	t.Logf("binding: contact %s from %s, %s, digest %s, expires in %v", b.Contact, b.Source, b.UserAgent, b.Digest, time.Until(b.Expires).Round(time.Second))
	if b.Digest != "MD5" {
		t.Errorf("baresip 1.0 registered with digest %q; it has MD5 only", b.Digest)
	}

	// The wrong password must have been checked and refused, not merely
	// never sent.
	for r.Stats().Refused == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("baresip's wrong password never refused (phone events %v)", bad.Events())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Logf("refused; phone events %v", bad.Events())
	if _, ok := r.Lookup(2); ok {
		t.Error("line 2 bound with a wrong password")
	}
}
