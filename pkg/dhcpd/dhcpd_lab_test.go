//go:build linux && lab

package dhcpd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/numplan"
)

// nsLines puts line addresses on the phone port inside the lab Pi.
type nsLines struct {
	pi  *lab.Host
	dev string
}

func (n nsLines) EnsureLine(_ context.Context, line int) error {
	return n.pi.IP("addr", "replace", fmt.Sprintf("10.0.%d.2/30", line), "dev", n.dev)
}

func (n nsLines) RemoveLine(_ context.Context, line int) error {
	return n.pi.IP("addr", "del", fmt.Sprintf("10.0.%d.2/30", line), "dev", n.dev)
}

// runLabServer runs a Server whose socket lives in pi's namespace.
func runLabServer(t *testing.T, pi *lab.Host, dir string) (*Server, func()) {
	t.Helper()
	s, err := New(Options{
		Port: "eth0", StateDir: dir, Lines: nsLines{pi, "eth0"}, ProvisionURL: provURL,
		Log: labtest.Logger(t),
		Listen: func(ifname string) (net.PacketConn, error) {
			return lab.In(pi, func() (net.PacketConn, error) { return ListenUDP(ifname) })
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, labtest.Serve(t, s.Run)
}

func TestLabPhonesGetLines(t *testing.T) {
	l := labtest.New(t)
	labtest.RequireTools(t, "busybox", "ping")
	sw, err := l.Bridge("switch")
	if err != nil {
		t.Fatal(err)
	}
	pi, err := l.Host("pi")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sw.Attach(pi, "eth0", ""); err != nil {
		t.Fatal(err)
	}
	var phones []*lab.Host
	for i := range 3 {
		h, err := l.Host(fmt.Sprintf("phone%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sw.Attach(h, "eth0", ""); err != nil {
			t.Fatal(err)
		}
		phones = append(phones, h)
	}
	// An "uplink" on the Pi with a would-be client behind it.
	lan, err := l.Host("uplan")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(pi, "wlan0", lan, "eth0"); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	s, stop := runLabServer(t, pi, state)

	got := map[string]int{} // phone -> line
	used := map[int]bool{}
	for i, h := range phones {
		env, err := h.Lease(t.Context(), "eth0", "-V", "Grandstream GXP1610 dslforum.org", "-x", "hostname:"+h.Name())
		if err != nil {
			t.Fatal(err)
		}
		line, ok := numplan.LocalPhone(mustAddr(t, env["ip"]))
		if !ok || used[line] {
			t.Fatalf("phone %d: ip=%q, want 10.0.s.1 with a distinct s (have %v)", i, env["ip"], got)
		}
		used[line] = true
		got[h.Name()] = line
		gw := fmt.Sprintf("10.0.%d.2", line)
		for k, want := range map[string]string{
			"subnet": "255.255.255.252", "router": gw, "serverid": gw, "dns": gw, "ntpsrv": gw,
			"lease": fmt.Sprint(int(LeaseTime.Seconds())),
		} {
			if strings.TrimSpace(env[k]) != want {
				t.Errorf("phone %d: udhcpc $%s = %q, want %q", i, k, env[k], want)
			}
		}
		// busybox shows option 66 as "bad": it only accepts a host name
		// there. Read the URL with a Go client from the same phone (same
		// MAC, so the same line).
		if u := option66(t, h); u != fmt.Sprintf("http://10.0.%d.2", line) {
			t.Errorf("phone %d: option 66 = %q, want http://10.0.%d.2", i, u, line)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		if out, err := h.Run(ctx, "ping", "-c", "1", "-W", "2", gw); err != nil {
			t.Errorf("phone %d cannot ping its gateway %s: %v\n%s", i, gw, err, out)
		}
		cancel()
	}
	ph, err := s.Phones(t.Context())
	if err != nil || len(ph) != 3 {
		t.Fatalf("Phones = %+v, %v", ph, err)
	}
	for _, p := range ph {
		if p.Vendor != "Grandstream" || p.Model != "GXP1610" || !strings.HasPrefix(p.Hostname, "phone") {
			t.Errorf("Phones: %+v, want Grandstream GXP1610 with hostname phoneN", p)
		}
	}

	// Nothing is served on the uplink, which has an address and a default
	// route like a real one: the server never even sees the DISCOVERs.
	if err := pi.Addr("wlan0", "198.51.100.2/24"); err != nil {
		t.Fatal(err)
	}
	if err := pi.Route("default", "via", "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	before, err := s.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if env, err := lan.Lease(t.Context(), "eth0"); err == nil {
		t.Errorf("a client on the uplink got a lease: %v", env)
	}
	after, err := s.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if after.Received != before.Received || after.Bound != 3 {
		t.Errorf("uplink DHCP reached the server: received %d -> %d, bound %d", before.Received, after.Received, after.Bound)
	}

	// Restart on the same state directory; the phones renew in reverse
	// order, so a server that had lost its bindings would hand out
	// different lines.
	stop()
	runLabServer(t, pi, state)
	for i := len(phones) - 1; i >= 0; i-- {
		h := phones[i]
		env, err := h.Lease(t.Context(), "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if line, _ := numplan.LocalPhone(mustAddr(t, env["ip"])); line != got[h.Name()] {
			t.Errorf("after restart %s got %s, want line %d", h.Name(), env["ip"], got[h.Name()])
		}
	}
}

// option66 runs a DHCP exchange in h with a client that shows options raw
// and returns option 66 of the ACK.
func option66(t *testing.T, h *lab.Host) string {
	t.Helper()
	ack, err := h.DHCPExchange(t.Context(), "eth0")
	if err != nil {
		t.Fatal(err)
	}
	return ack.TFTPServerName()
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("address %q: %v", s, err)
	}
	return a
}
