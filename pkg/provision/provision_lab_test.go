//go:build linux && lab

package provision

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/devsock"
	"github.com/peerline/peerline/pkg/dhcpd"
	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/tftpd"
)

// piLines puts line addresses on the lab Pi's phone port.
type piLines struct{ pi *lab.Host }

func (p piLines) EnsureLine(_ context.Context, line int) error {
	return p.pi.IP("addr", "replace", numplan.LineGateway(uint8(line)).String()+"/30", "dev", "eth0")
}

func (p piLines) RemoveLine(_ context.Context, line int) error {
	return p.pi.IP("addr", "del", numplan.LineGateway(uint8(line)).String()+"/30", "dev", "eth0")
}

// TestLabImpostor is issue 13 item 7 on a real phone port: a phone gets its
// line by DHCP and its file by HTTP and TFTP; a second device on the same
// switch that gives itself the phone's address (another MAC) gets 403 and
// a TFTP access violation for every provisioning file; after it leaves, the
// phone gets its file again. The servers are the real dhcpd, provision and
// tftpd, in the Pi's namespace, and the neighbour entries are the kernel's.
func TestLabImpostor(t *testing.T) {
	labtest.RequireRoot(t)
	l := labtest.New(t)
	labtest.RequireTools(t, "busybox")
	sw, err := l.Bridge("switch")
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]*lab.Host{}
	for _, name := range []string{"pi", "phone", "impostor"} {
		h, err := l.Host(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sw.Attach(h, "eth0", ""); err != nil {
			t.Fatal(err)
		}
		hosts[name] = h
	}
	pi, phone, imp := hosts["pi"], hosts["phone"], hosts["impostor"]
	log := labtest.Logger(t)

	leases, err := dhcpd.New(dhcpd.Options{
		Port: "eth0", StateDir: t.TempDir(), Lines: piLines{pi}, ProvisionURL: URL, Log: log.With("service", "dhcp"),
		Listen: func(ifname string) (net.PacketConn, error) {
			return lab.In(pi, func() (net.PacketConn, error) { return dhcpd.ListenUDP(ifname) })
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	labtest.Serve(t, leases.Run)
	prov, err := NewServer(Options{
		Port:      "eth0",
		Directory: func(context.Context) (Directory, error) { return exampleDir(), nil },
		Phones:    leases,
		Log:       log.With("service", "provision"),
		Listen: func(network, addr string) (net.Listener, error) {
			return lab.In(pi, func() (net.Listener, error) { return devsock.Listen(context.Background(), network, addr, "eth0") })
		},
		Neighbor: func(_ context.Context, a netip.Addr) (net.HardwareAddr, error) {
			return lab.In(pi, func() (net.HardwareAddr, error) { return LookupNeighbor("eth0", a) })
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	labtest.Serve(t, prov.Run)
	tftp, err := tftpd.New(tftpd.Options{
		Port: "eth0", Files: prov.Handler(), Log: log.With("service", "tftp"),
		Listen: func(ifname, addr string) (net.PacketConn, error) {
			return lab.In(pi, func() (net.PacketConn, error) { return tftpd.ListenUDP(ifname, addr) })
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	labtest.Serve(t, tftp.Run)

	env, err := phone.Lease(t.Context(), "eth0", "-V", "Grandstream GXP1610 dslforum.org")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := netip.ParseAddr(env["ip"])
	if err != nil {
		t.Fatalf("lease address %q: %v", env["ip"], err)
	}
	line := int(addr.As4()[2])
	phoneMAC, err := lab.In(phone, func() (net.HardwareAddr, error) {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return nil, err
		}
		return ifi.HardwareAddr, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	file := "cfg" + strings.ReplaceAll(phoneMAC.String(), ":", "") + ".xml"
	// A GXP joins option 66 and the file name with "/".
	fileURL := URL(line) + "/" + file
	gw := numplan.LineGateway(uint8(line)).String()

	get := func(h *lab.Host, url string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: h.Dial}}
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s from %s: %v", url, h.Name(), err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tftpGet := func(h *lab.Host, name string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		out := filepath.Join(t.TempDir(), "got")
		if o, err := h.Run(ctx, "busybox", "tftp", "-g", "-r", name, "-l", out, gw); err != nil {
			return o, err
		}
		b, err := os.ReadFile(out)
		return string(b), err
	}
	wantMAC := "<mac>" + strings.ReplaceAll(phoneMAC.String(), ":", "") + "</mac>"

	if code, body := get(phone, fileURL); code != 200 || !strings.Contains(body, wantMAC) {
		t.Fatalf("phone GET %s = %d, want 200 with its own file:\n%.300s", fileURL, code, body)
	}
	if body, err := tftpGet(phone, file); err != nil || !strings.Contains(body, wantMAC) {
		t.Errorf("phone TFTP %s: %v, want its own file:\n%.300s", file, err, body)
	}

	// The impostor: the phone's address, its own MAC, on the same switch.
	cidr := fmt.Sprintf("%s/30", addr)
	if err := imp.Addr("eth0", cidr); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/" + file, "//" + file, "/phonebook/grandstream/phonebook.xml", "/y000000000031.cfg"} {
		if code, body := get(imp, "http://"+gw+p); code != 403 || strings.Contains(body, "alice") {
			t.Errorf("impostor GET %s = %d, want 403 and nothing of the file:\n%.300s", p, code, body)
		}
	}
	if body, err := tftpGet(imp, file); err == nil {
		t.Errorf("impostor fetched %s by TFTP:\n%.300s", file, body)
	} else if !strings.Contains(body, "access violation") {
		t.Logf("impostor TFTP refused (busybox says %q)", strings.TrimSpace(body))
	}

	// It leaves; the phone's ARP entry for the Pi expires, it asks again
	// and gets its file.
	if err := imp.IP("addr", "del", cidr, "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := phone.IP("neigh", "flush", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	if code, body := get(phone, fileURL); code != 200 || !strings.Contains(body, wantMAC) {
		t.Errorf("phone GET %s after the impostor left = %d, want 200:\n%.300s", fileURL, code, body)
	}
}
