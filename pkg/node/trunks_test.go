package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/dialplan"
	"github.com/peerline/peerline/pkg/trunkconfig"
)

// TestTrunkRules: each trunk's prefix becomes a rule after the config's
// own, which therefore win.
func TestTrunkRules(t *testing.T) {
	cfg := &config.Config{
		Name: "home", Lines: []int{1, 2},
		SIP: config.SIP{DialPlan: []dialplan.Rule{{Match: "0110", Target: "line:2"}}},
		Trunks: []trunkconfig.Config{
			{Name: "sipgate", Prefix: "0"},
			{Name: "pbx", Prefix: "*9"},
			{Name: "noprefix"},
		},
	}
	s := &sipPart{}
	plan := s.planFor(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	env := sipEnv(cfg, cfg.Lines)
	for _, tc := range []struct {
		dialled string
		want    dialplan.Decision
	}{
		{"0301234", dialplan.Decision{Kind: dialplan.Trunk, Trunk: "sipgate", Number: "301234"}},
		{"00441234", dialplan.Decision{Kind: dialplan.Trunk, Trunk: "sipgate", Number: "0441234"}},
		{"*921", dialplan.Decision{Kind: dialplan.Trunk, Trunk: "pbx", Number: "21"}},
		{"0110", dialplan.Decision{Kind: dialplan.Local, Line: 2}},
		{"2", dialplan.Decision{Kind: dialplan.Local, Line: 2}},
		{"0", dialplan.Decision{Kind: dialplan.Refuse, Code: 404}},
	} {
		d := plan.Route(tc.dialled, env)
		d.Reason = ""
		if d != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.dialled, d, tc.want)
		}
	}
}

// TestUplinkAddr: the address the kernel picks toward the registrar, and a
// route out by a link that is not the uplink refused.
func TestUplinkAddr(t *testing.T) {
	a, err := uplinkAddr("127.0.0.1:5060", func(string) bool { return false })
	if err != nil || a != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("uplinkAddr = %v, %v", a, err)
	}
	lo := interfaceOf(a)
	if lo == "" {
		t.Fatal("no interface holds 127.0.0.1")
	}
	_, err = uplinkAddr("127.0.0.1:5060", func(ifname string) bool { return ifname == lo })
	if err == nil || !strings.Contains(err.Error(), "not the uplink") {
		t.Errorf("a route by the phone port: %v", err)
	}
	_, err = uplinkAddr("no-such-host.invalid:5060", func(string) bool { return false })
	if err == nil || !strings.Contains(err.Error(), "cannot resolve the registrar") {
		t.Errorf("unresolvable registrar: %v", err)
	}
}

// TestWatchUplink: a trunk is restarted when the uplink's address moves,
// and its own end is reported.
func TestWatchUplink(t *testing.T) {
	up := netip.MustParseAddr("192.0.2.10")
	done := make(chan error, 1)
	// A failed look-up (DNS, the uplink down a moment) keeps the trunk;
	// the next address, a different one, restarts it.
	addrs := []netip.Addr{{}, up, netip.MustParseAddr("192.0.2.11")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	why, ended := watchUplink(ctx, done, up, time.Millisecond, func() (netip.Addr, error) {
		a := addrs[0]
		addrs = addrs[1:]
		if !a.IsValid() {
			return a, errors.New("no route")
		}
		return a, nil
	})
	if ended || !strings.Contains(why, "changed from 192.0.2.10 to 192.0.2.11") {
		t.Errorf("moved uplink: %q, %v", why, ended)
	}
	done <- net.ErrClosed
	why, ended = watchUplink(ctx, done, up, time.Millisecond, func() (netip.Addr, error) { return up, nil })
	if !ended || why != net.ErrClosed.Error() {
		t.Errorf("trunk ended: %q, %v", why, ended)
	}
}

// TestTrunkStatusWaiting: a trunk that has not started says why, and one
// added after the start says to restart; the password never shows.
func TestTrunkStatusWaiting(t *testing.T) {
	cfg := &config.Config{Trunks: []trunkconfig.Config{{Name: "sipgate", Registrar: "sipgate.de", User: "49", Password: "secret", Lines: []int{1}, Prefix: "0"}}}
	nd := &node{}
	nd.cfg.Store(cfg)
	nd.trunks = newTrunksPart(cfg)
	nd.trunks.set("sipgate", func(r *trunkRun) { r.waiting = "line 1 is not up on the phone port yet" })
	cfg2 := *cfg
	cfg2.Trunks = append(cfg2.Trunks, trunkconfig.Config{Name: "pbx", Registrar: "pbx", User: "21", Password: "x", Lines: []int{1}})
	nd.cfg.Store(&cfg2)
	ts := nd.trunkStatus().Trunks
	if len(ts) != 2 || ts[0].State != "waiting" || ts[0].Status != "waiting: line 1 is not up on the phone port yet" || ts[0].Registrar != "sipgate.de:5060" {
		t.Errorf("status %+v", ts)
	}
	if !strings.Contains(ts[1].Status, "restart peerlined") {
		t.Errorf("added trunk: %+v", ts[1])
	}
	if _, why, ok := nd.trunkURI("sipgate", "301234", false); ok || why != "line 1 is not up on the phone port yet" {
		t.Errorf("trunkURI of a waiting trunk: %q %v", why, ok)
	}
}
