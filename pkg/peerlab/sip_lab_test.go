//go:build linux && lab

package peerlab

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/registrar"
)

// TestSIPNamesAndShortNumbers is issue 18's user story across two Pis: the
// handsets get their SIP accounts from their provisioning files, register
// to their own Pi with digest authentication (a wrong password is
// refused), dial the other Pi's phone by short number, by name and by the
// label the other Pi gave its line, talk
// (audio checked both ways), see the caller's name, and call back the
// address their phone showed.
func TestSIPNamesAndShortNumbers(t *testing.T) {
	l := newLab(t)
	labtest.RequireTools(t, "busybox", "curl")
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	// The default digest offer (SHA-256, then MD5): the registrar offers
	// baresip 1.0, which fails any challenge naming SHA-256, MD5 alone
	// (TestTrunkInPeerlined keeps sip.digest "md5").
	n, err := Build(ctx, l, Options{
		Peerlined: peerlinedBin,
		HandsetsA: []string{gxp1610, gxp1610},
		HandsetsB: []string{t19p},
	})
	if err != nil {
		t.Fatal(err)
	}
	ha, intruder, hb := n.A.Handsets[0], n.A.Handsets[1], n.B.Handsets[0]

	// The accounts come from the phones' own files, as a desk phone gets
	// them.
	gwA, gwB := numplan.LineGateway(uint8(ha.Line)).String(), numplan.LineGateway(uint8(hb.Line)).String()
	code, gs := fetch(ctx, t, ha, "/cfg"+macDigits(ha.MAC)+".xml", "Grandstream Model HW GXP1610 SW 1.0.7.13 DevId "+macDigits(ha.MAC))
	if code != 200 {
		t.Fatalf("GXP's config: HTTP %d\n%.300s", code, gs)
	}
	pA := xmlValue(t, gs, "P34")
	if got := xmlValue(t, gs, "P47"); got != gwA {
		t.Errorf("GXP's SIP server P47 = %q, want its Pi %s", got, gwA)
	}
	if got := xmlValue(t, gs, "P35"); got != fmt.Sprint(ha.Line) {
		t.Errorf("GXP's user P35 = %q, want its line %d", got, ha.Line)
	}
	code, yl := fetch(ctx, t, hb, "/"+macDigits(hb.MAC)+".cfg", "Yealink SIP-T19P 31.72.0.75 "+hb.MAC)
	if code != 200 {
		t.Fatalf("T19P's config: HTTP %d\n%.300s", code, yl)
	}
	pB := cfgValue(t, yl, "account.1.password")
	if got := cfgValue(t, yl, "account.1.sip_server.1.address"); got != gwB {
		t.Errorf("T19P's SIP server = %q, want its Pi %s", got, gwB)
	}
	if pA == "" || pB == "" || pA == pB {
		t.Fatalf("passwords %q and %q: want two different ones", pA, pB)
	}
	fi, err := os.Stat(filepath.Join(n.A.Config.StateDir, registrar.PasswordsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("A's SIP passwords file: %v, %v; want it, mode 0600", fi, err)
	}

	// The service answers on the phone port only: an OPTIONS from the
	// handset is answered, the same from the Internet side (B's uplink, to
	// A's uplink address) is not.
	if !answersOptions(t, ha.Host, gwA) {
		t.Errorf("A's SIP service does not answer its handset at %s", gwA)
	}
	if answersOptions(t, n.B.Host, n.A.WAN.String()) {
		t.Errorf("A's SIP service answers on its uplink address %s", n.A.WAN)
	}

	phoneA, err := sipPhone(ctx, l, n.A, ha, "Alice Kitchen", pA, 1000)
	if err != nil {
		t.Fatal(err)
	}
	phoneB, err := sipPhone(ctx, l, n.B, hb, "Bob Hall", pB, 440)
	if err != nil {
		t.Fatal(err)
	}
	// The intruder on A's second line guesses its password.
	if _, err := sipPhone(ctx, l, n.A, intruder, "", "guess", 600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	linesA := waitLines(ctx, t, n.A, "A's phone registered and the intruder refused", func(ls control.Lines) bool {
		return registered(ls, ha.Line) != nil && ls.Registrar.Refused > 0
	})
	linesB := waitLines(ctx, t, n.B, "B's phone registered", func(ls control.Lines) bool { return registered(ls, hb.Line) != nil })
	t.Logf("registered after %v: A line %d %+v, B line %d %+v", time.Since(start).Round(time.Millisecond),
		ha.Line, *registered(linesA, ha.Line), hb.Line, *registered(linesB, hb.Line))
	if r := registered(linesA, intruder.Line); r != nil {
		t.Errorf("line %d registered with a wrong password: %+v", intruder.Line, r)
	}
	t.Logf("A's registrar: %+v", linesA.Registrar)
	if want := fmt.Sprintf("sip:%d@pia", ha.Line); !hasURI(linesA, ha.Line, want) {
		t.Errorf("A's line %d URIs %+v, want %s", ha.Line, linesA.Lines, want)
	}

	// By short number: B is 7 at A.
	iB, iA := 7, 4
	r, err := Call(ctx, phoneA, phoneB, fmt.Sprintf("sip:%d*%d@%s", iB, hb.Line, gwA), 3*time.Second)
	// The caller's From names its registrar, A's side of its line, which
	// the rewriter shows at B as A's index there.
	requireCall(t, r, err, fmt.Sprintf("sip:%d@10.%d.%d.2", ha.Line, iA, ha.Line))
	// baresip keeps showing what was dialled, not where it was sent.
	t.Logf("A's phone shows the callee as %s; B's shows the caller as %q %s", r.CalleeSeenAs, r.CallerName, r.CallerSeenAs)
	if r.CallerName != "Alice Kitchen" {
		t.Errorf("B's phone shows the caller's name as %q, want Alice Kitchen", r.CallerName)
	}

	// By name: A is "piA" at B.
	byName, err := Call(ctx, phoneB, phoneA, fmt.Sprintf("sip:piA.%d@%s", ha.Line, gwB), 3*time.Second)
	requireCall(t, byName, err, fmt.Sprintf("sip:%d@10.%d.%d.2", hb.Line, iB, hb.Line))
	if byName.CallerName != "Bob Hall" {
		t.Errorf("A's phone shows the caller's name as %q, want Bob Hall", byName.CallerName)
	}

	// Call back what B's phone showed for A's call: A's Pi passes it to
	// A's phone.
	back, err := Call(ctx, phoneB, phoneA, r.CallerSeenAs, 3*time.Second)
	requireCall(t, back, err, fmt.Sprintf("sip:%d@10.%d.%d.2", hb.Line, iB, hb.Line))

	// By B's own label for its line, as B announces it (stored in A's
	// config as the peer's line_labels, applied by a reload): A's phone
	// dials piB.hall.
	for k := range n.A.Config.Peers {
		if n.A.Config.Peers[k].Index == iB {
			n.A.Config.Peers[k].LineLabels = map[int]string{hb.Line: "hall"}
		}
	}
	if err := n.A.writeConfig(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(n.A.Daemon.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLines(ctx, t, n.A, "B's label in A's lines", func(ls control.Lines) bool {
		for _, p := range ls.Peers {
			if p.Peer == iB && p.Line == hb.Line && p.Label == "hall" {
				return true
			}
		}
		return false
	})
	byLabel, err := Call(ctx, phoneA, phoneB, "sip:piB.hall@"+gwA, 3*time.Second)
	requireCall(t, byLabel, err, fmt.Sprintf("sip:%d@10.%d.%d.2", ha.Line, iA, ha.Line))
	linesA = waitLines(ctx, t, n.A, "A's decision for piB.hall", func(ls control.Lines) bool {
		return len(ls.Decisions) > 0 && strings.HasPrefix(ls.Decisions[0].Dialled, "piB.hall@")
	})
	if d := linesA.Decisions[0]; d.Code != 302 || d.Target != fmt.Sprintf("sip:%d@10.%d.%d.1", hb.Line, iB, hb.Line) || !strings.Contains(d.Reason, "label hall at piB") {
		t.Errorf("A's decision for piB.hall %+v, want a 302 to B's phone by its label", d)
	}

	// The decisions are visible where the owner looks.
	linesA = waitLines(ctx, t, n.A, "A's dial decision", func(ls control.Lines) bool { return len(ls.Decisions) > 0 })
	d := linesA.Decisions[len(linesA.Decisions)-1]
	if d.Decision != "peer" || d.Code != 302 || d.Target != fmt.Sprintf("sip:%d@10.%d.%d.1", hb.Line, iB, hb.Line) {
		t.Errorf("A's latest decision %+v, want a 302 to B's phone", d)
	}
	linesB = waitLines(ctx, t, n.B, "B's dial decision", func(ls control.Lines) bool { return len(ls.Decisions) > 0 })
	t.Logf("A decided %+v; B decided %+v", linesA.Decisions, linesB.Decisions)
	if d := linesB.Decisions[0]; d.Decision != "peer" || !strings.HasPrefix(d.Dialled, "piA.") {
		t.Errorf("B's latest decision %+v, want the call by name", d)
	}
}

// sipPhone starts an auto-answering baresip on handset h registered to its
// Pi with password, its account user the line number, as a provisioned
// desk phone is.
func sipPhone(ctx context.Context, l *lab.Lab, n *Node, h *Handset, name, password string, hz float64) (*Phone, error) {
	tone := filepath.Join(l.Dir(), fmt.Sprintf("tone-sip-%s-%d.wav", n.Name, h.Line))
	if err := lab.Tone(tone, hz, ToneSeconds); err != nil {
		return nil, err
	}
	p, err := l.Phone(context.WithoutCancel(ctx), h.Host, lab.PhoneOpts{
		Addr:        h.Addr().String(),
		User:        fmt.Sprint(h.Line),
		TonePath:    tone,
		AutoAnswer:  true,
		Registrar:   numplan.LineGateway(uint8(h.Line)).String(),
		Password:    password,
		DisplayName: name,
	})
	if err != nil {
		return nil, err
	}
	if err := l.OnClose(p.Close); err != nil {
		return nil, err
	}
	return &Phone{Phone: p, Node: n, ToneHz: hz}, nil
}

// answersOptions sends one SIP OPTIONS from host h to addr:5060 and says
// whether any answer came within a second.
func answersOptions(t *testing.T, h *lab.Host, addr string) bool {
	t.Helper()
	c, err := h.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst, err := net.ResolveUDPAddr("udp4", addr+":5060")
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().(*net.UDPAddr)
	msg := "OPTIONS sip:" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + h.Name() + ":" + fmt.Sprint(local.Port) + ";rport;branch=z9hG4bK-probe\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@invalid>;tag=p\r\nTo: <sip:" + addr + ">\r\n" +
		"Call-ID: probe-" + addr + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.WriteTo([]byte(msg), dst); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 2048)
	n, _, err := c.ReadFrom(buf)
	return err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 ")
}

// waitLines polls `peerline lines` on n until ok.
func waitLines(ctx context.Context, t *testing.T, n *Node, what string, ok func(control.Lines) bool) control.Lines {
	t.Helper()
	for {
		var ls control.Lines
		peerline(ctx, t, n, &ls, "lines")
		if ok(ls) {
			return ls
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; last `peerline lines`: %+v", what, ctx.Err(), ls)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func registered(ls control.Lines, line int) *control.Registration {
	for _, l := range ls.Lines {
		if l.Line == line {
			return l.Registration
		}
	}
	return nil
}

func hasURI(ls control.Lines, line int, uri string) bool {
	for _, l := range ls.Lines {
		for _, u := range l.URIs {
			if l.Line == line && u == uri {
				return true
			}
		}
	}
	return false
}

func xmlValue(t *testing.T, doc, key string) string {
	t.Helper()
	m := regexp.MustCompile("<" + key + ">([^<]*)</" + key + ">").FindStringSubmatch(doc)
	if m == nil {
		t.Fatalf("no <%s> in\n%.300s", key, doc)
	}
	return m[1]
}

func cfgValue(t *testing.T, doc, key string) string {
	t.Helper()
	for line := range strings.Lines(doc) {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in\n%.300s", key, doc)
	return ""
}
