//go:build linux && lab

package registrar

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
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

// A softphone that has SHA-256 digest (Debian's linphone-cli, liblinphone
// 5) registers at its first try with the registrar's default offer,
// SHA-256 then MD5, and the binding records SHA-256: the stronger digest
// is the one used whenever a phone has it (RFC 8760).
func TestLinphoneRegistersSHA256(t *testing.T) {
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
	if err := pi.Addr("p1", "10.0.1.2/24"); err != nil {
		t.Fatal(err)
	}
	if err := desk.Addr("eth0", "10.0.1.1/24"); err != nil {
		t.Fatal(err)
	}
	conn, err := pi.ListenPacket("udp4", "10.0.1.2:5060")
	if err != nil {
		t.Fatal(err)
	}
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

	// linphonec keeps its state under HOME; the realm is left out so
	// that it answers whatever the registrar names.
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".local/share/linphone"), 0o700); err != nil {
		t.Fatal(err)
	}
	rc := filepath.Join(home, "linphonerc")
	conf := `[sip]
sip_port=5070
default_proxy=0
[proxy_0]
reg_proxy=<sip:10.0.1.2:5060;transport=udp>
reg_identity=sip:1@10.0.1.2
reg_expires=600
reg_sendregister=1
[auth_info_0]
username=1
passwd=pw-line-one
`
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(home, "linphonec.log")
	cmd := desk.Command(ctx, "linphonec", "-c", rc, "-d", "6", "-l", logPath)
	cmd.Env = append(os.Environ(), "HOME="+home)
	// linphonec reads commands from stdin and quits at its end: an open
	// pipe keeps it running until the context kills it.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting linphonec (Debian's linphone-cli; scripts/install-deps.sh installs it): %v", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	for {
		if b, ok := r.Lookup(1); ok {
			t.Logf("registered %v after linphonec was started: %s, digest %s", time.Since(start).Round(time.Millisecond), b.UserAgent, b.Digest)
			if b.Digest != "SHA-256" {
				t.Errorf("linphonec registered with digest %q; it has SHA-256, which the registrar offers first", b.Digest)
			}
			return
		}
		select {
		case <-ctx.Done():
			log, _ := os.ReadFile(logPath)
			t.Fatalf("linphonec never registered; the lines of its log on registering:\n%s", registerLines(log))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// registerLines keeps the lines of a softphone's log about registering
// and authenticating, the last 6 KB of them.
func registerLines(log []byte) []byte {
	var keep []byte
	for _, line := range bytes.Split(log, []byte("\n")) {
		for _, w := range []string{"REGISTER", "uthenticat", "egistration", "rror"} {
			if bytes.Contains(line, []byte(w)) {
				keep = append(append(keep, line...), '\n')
				break
			}
		}
	}
	return keep[max(0, len(keep)-6000):]
}
