//go:build linux && lab

package peerlab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/trunkconfig"
)

// TestTrunkInPeerlined is issue 18's trunk as a user sets it up: a real
// peerlined with a trunk in its config registers with a provider (Kamailio
// and rtpengine on the Internet segment), `peerline trunks` says so, the
// Pi's phone dials the trunk's prefix through the Pi's SIP service (302 to
// the trunk) and talks to a softphone behind the provider, and the
// softphone's call to the account's number rings the configured line. The
// Pi's phone is a provisioned handset, registered to the Pi.
// Audio is checked both ways. NAT kinds are pkg/trunk's lab test's.
func TestTrunkInPeerlined(t *testing.T) {
	l := newLab(t)
	labtest.RequireTools(t, "kamailio", "rtpengine")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	const (
		provAddr  = "198.51.100.10"
		softAddr  = "198.51.100.20"
		trunkUser = "4930123"
		trunkPass = "trunk-secret"
		alicePass = "alice-secret"
	)
	inet, err := l.Bridge("inet")
	check(t, err)
	provHost, err := l.PublicHost("provider", inet, netip.MustParsePrefix(provAddr+"/24"))
	check(t, err)
	softHost, err := l.PublicHost("softphone", inet, netip.MustParsePrefix(softAddr+"/24"))
	check(t, err)
	prov := &lab.Provider{Addr: provAddr, Accounts: map[string]string{trunkUser: trunkPass, "alice": alicePass}}
	check(t, lab.StartProvider(ctx, l, provHost, prov))

	// A desk phone plugged in: it gets line 1 by DHCP and its SIP account
	// from its provisioning file.
	node, err := newNode(l, onSegment(inet, netip.MustParseAddr("198.51.100.1")), "A", fmt.Sprintf("plt%xa", os.Getpid()%0xfff), peerlinedBin, []string{gxp1610})
	check(t, err)
	node.Config.Trunks = []trunkconfig.Config{{
		Name: "prov", Registrar: provAddr, Domain: lab.ProviderDomain, User: trunkUser, Password: trunkPass,
		CallerID: "Home", Lines: []int{1}, Prefix: "0",
	}}
	// sip.digest "md5" (offer MD5 alone) still works: the default is
	// tested by TestSIPNamesAndShortNumbers.
	node.Config.SIP.Digest = "md5"
	node.Config.Withhold.Prefix = "*31*"
	check(t, node.writeConfig())
	check(t, node.Start(ctx))
	_, err = node.WaitReady(ctx, daemonWait)
	check(t, err)
	check(t, node.Lease(ctx))
	h := node.Handsets[0]
	if h.Line != 1 {
		t.Fatalf("the handset got line %d, want 1 (the trunk's line)", h.Line)
	}

	start := time.Now()
	var ts control.Trunks
	for {
		peerline(ctx, t, node, &ts, "trunks")
		if len(ts.Trunks) == 1 && ts.Trunks[0].State == "registered" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the trunk never registered: %+v", ts)
		case <-time.After(200 * time.Millisecond):
		}
	}
	tr := ts.Trunks[0]
	t.Logf("trunk registered %v after the daemon was ready: %s, uplink %s, phones %s, contact %s", time.Since(start).Round(time.Millisecond), tr.Status, tr.Uplink, tr.Phones, tr.Contact)
	if tr.Uplink != "198.51.100.1:5062" || tr.Phones != "10.0.1.2:5062" {
		t.Errorf("trunk sockets %s and %s, want 198.51.100.1:5062 and 10.0.1.2:5062", tr.Uplink, tr.Phones)
	}
	out, err := node.Host.Run(ctx, peerlineBin, "-socket", control.SocketPath(node.Config.RunDir), "trunks")
	if err != nil || !strings.Contains(out, "prov") || !strings.Contains(out, "registered") || strings.Contains(out, trunkPass) {
		t.Errorf("peerline trunks: %v\n%s", err, out)
	}

	tone := filepath.Join(l.Dir(), "tone-softphone.wav")
	check(t, lab.Tone(tone, 1000, ToneSeconds))
	sp, err := l.Phone(context.WithoutCancel(ctx), softHost, lab.PhoneOpts{Addr: softAddr, User: "alice", Registrar: provAddr,
		Password: alicePass, TonePath: tone, AutoAnswer: true})
	check(t, err)
	check(t, l.OnClose(sp.Close))
	soft := &Phone{Phone: sp, ToneHz: 1000}
	check(t, prov.WaitBinding(ctx, "alice"))
	code, gs := fetch(ctx, t, h, "/cfg"+macDigits(h.MAC)+".xml", "Grandstream Model HW GXP1610 SW 1.0.7.13 DevId "+macDigits(h.MAC))
	if code != 200 {
		t.Fatalf("GXP's config: HTTP %d\n%.300s", code, gs)
	}
	phone, err := sipPhone(ctx, l, node, h, "Kitchen", xmlValue(t, gs, "P34"), 440)
	check(t, err)
	waitLines(ctx, t, node, "the phone registered", func(ls control.Lines) bool { return registered(ls, h.Line) != nil })

	t.Run("outbound", func(t *testing.T) {
		// Dialled as a user dials: the prefix and the number, to the Pi.
		r, err := Call(ctx, phone, soft, "sip:0alice@10.0.1.2", 3*time.Second)
		check(t, err)
		t.Logf("set up in %v; the softphone sees the caller as %q %s", r.Setup.Round(time.Millisecond), r.CallerName, r.CallerSeenAs)
		if !r.OK() {
			t.Errorf("audio: the softphone %v (%v), the Pi's phone %v (%v)", r.CalleeHeard, r.CalleeErr, r.CallerHeard, r.CallerErr)
		}
		if !strings.Contains(r.CallerSeenAs, trunkUser) {
			t.Errorf("the softphone sees the caller as %s, want the account %s", r.CallerSeenAs, trunkUser)
		}
		var ls control.Lines
		peerline(ctx, t, node, &ls, "lines")
		if len(ls.Decisions) == 0 || ls.Decisions[0].Decision != "trunk" || ls.Decisions[0].Code != 302 || ls.Decisions[0].Target != "sip:0alice@10.0.1.2:5062" {
			t.Errorf("the SIP service's decisions %+v, want a 302 to the trunk's sip:0alice@10.0.1.2:5062", ls.Decisions)
		}
	})
	t.Run("outbound withheld", func(t *testing.T) {
		r, err := Call(ctx, phone, soft, "sip:*31*0alice@10.0.1.2", 2*time.Second)
		check(t, err)
		t.Logf("the softphone sees the caller as %q %s", r.CallerName, r.CallerSeenAs)
		if !r.OK() {
			t.Errorf("audio: the softphone %v (%v), the Pi's phone %v (%v)", r.CalleeHeard, r.CalleeErr, r.CallerHeard, r.CallerErr)
		}
		if strings.Contains(r.CallerSeenAs, trunkUser) || !strings.Contains(r.CallerSeenAs, "anonymous") {
			t.Errorf("the softphone sees the caller as %s, want anonymous", r.CallerSeenAs)
		}
	})
	t.Run("inbound", func(t *testing.T) {
		r, err := Call(ctx, soft, phone, "sip:"+trunkUser+"@"+provAddr, 3*time.Second)
		check(t, err)
		t.Logf("set up in %v; the Pi's phone sees the caller as %s", r.Setup.Round(time.Millisecond), r.CallerSeenAs)
		if !r.OK() {
			t.Errorf("audio: the Pi's phone %v (%v), the softphone %v (%v)", r.CalleeHeard, r.CalleeErr, r.CallerHeard, r.CallerErr)
		}
		if want := "sip:0alice@10.0.1.2:5062"; r.CallerSeenAs != want {
			t.Errorf("the Pi's phone sees the caller as %s, want %s (to call back through the trunk)", r.CallerSeenAs, want)
		}
	})
	peerline(ctx, t, node, &ts, "trunks")
	if tr := ts.Trunks[0]; tr.State != "registered" || tr.Calls != 0 {
		t.Errorf("after the calls: %+v, want registered, no call up", tr)
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
