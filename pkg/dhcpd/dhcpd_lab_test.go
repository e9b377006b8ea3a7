//go:build linux && lab

package dhcpd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
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

// udhcpcScript records the environment of a bound lease in $ENVFILE and
// configures the address, as a phone would.
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew)
	env | sort > "$ENVFILE"
	ip addr flush dev "$interface"
	ip addr add "$ip/$subnet" dev "$interface"
	;;
esac
exit 0
`

// runLabServer runs a Server whose socket lives in pi's namespace.
func runLabServer(t *testing.T, pi *lab.Host, dir string) (*Server, func()) {
	t.Helper()
	s, err := New(Options{
		Port: "eth0", StateDir: dir, Lines: nsLines{pi, "eth0"}, ProvisionURL: provURL,
		Log: labtest.Logger(t),
		Listen: func(ifname string) (net.PacketConn, error) {
			var c net.PacketConn
			err := pi.Do(func() error {
				var err error
				c, err = ListenUDP(ifname)
				return err
			})
			return c, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	}
	t.Cleanup(stop)
	return s, stop
}

// udhcpc runs busybox udhcpc once in h and returns the lease's environment,
// or an error if no lease came.
func udhcpc(t *testing.T, h *lab.Host, dir, name string, extra ...string) (map[string]string, error) {
	t.Helper()
	script := filepath.Join(dir, "udhcpc.sh")
	envFile := filepath.Join(dir, name+".env")
	os.Remove(envFile)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	argv := append([]string{"env", "ENVFILE=" + envFile, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f",
		"-t", "4", "-T", "1", "-s", script}, extra...)
	out, err := h.Command(ctx, argv...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("udhcpc in %s: %w\n%s", h, err, out)
	}
	f, err := os.Open(envFile)
	if err != nil {
		return nil, fmt.Errorf("udhcpc in %s succeeded but the script did not run: %w\n%s", h, err, out)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env, sc.Err()
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
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "udhcpc.sh"), []byte(udhcpcScript), 0o755); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	s, stop := runLabServer(t, pi, state)

	got := map[string]int{} // phone -> line
	used := map[int]bool{}
	for i, h := range phones {
		env, err := udhcpc(t, h, dir, h.Name(), "-V", "Grandstream GXP1610 dslforum.org", "-x", "hostname:"+h.Name())
		if err != nil {
			t.Fatal(err)
		}
		line, ok := phoneLine(mustAddr(t, env["ip"]))
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
		if u := option66(t, h); u != fmt.Sprintf("http://10.0.%d.2/", line) {
			t.Errorf("phone %d: option 66 = %q, want http://10.0.%d.2/", i, u, line)
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
	if env, err := udhcpc(t, lan, dir, "uplan"); err == nil {
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
		env, err := udhcpc(t, h, dir, h.Name())
		if err != nil {
			t.Fatal(err)
		}
		if line, _ := phoneLine(mustAddr(t, env["ip"])); line != got[h.Name()] {
			t.Errorf("after restart %s got %s, want line %d", h.Name(), env["ip"], got[h.Name()])
		}
	}
}

// option66 runs a DHCP exchange with nclient4 in h and returns option 66
// of the ACK.
func option66(t *testing.T, h *lab.Host) string {
	t.Helper()
	var c *nclient4.Client
	if err := h.Do(func() error {
		var err error
		c, err = nclient4.New("eth0", nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
		return err
	}); err != nil {
		t.Fatalf("nclient4 in %s: %v", h, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	lease, err := c.Request(ctx)
	if err != nil {
		t.Fatalf("nclient4 request in %s: %v", h, err)
	}
	return lease.ACK.TFTPServerName()
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("address %q: %v", s, err)
	}
	return a
}
