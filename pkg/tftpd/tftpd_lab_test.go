//go:build linux && lab

package tftpd

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/labtest"
)

// TestLabBusyboxTFTP fetches files with busybox tftp from a phone namespace
// while the server is bound to the pi's phone port; a host on the pi's
// uplink gets nothing.
func TestLabBusyboxTFTP(t *testing.T) {
	l := labtest.New(t)
	labtest.RequireTools(t, "busybox")
	pi, err := l.Host("pi")
	if err != nil {
		t.Fatal(err)
	}
	phone, err := l.Host("phone")
	if err != nil {
		t.Fatal(err)
	}
	up, err := l.Host("up")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(pi, "eth0", phone, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(pi, "wan0", up, "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		h         interface{ Addr(string, string) error }
		dev, cidr string
	}{
		{pi, "eth0", "10.0.1.2/30"}, {phone, "eth0", "10.0.1.1/30"},
		{pi, "wan0", "198.51.100.1/24"}, {up, "eth0", "198.51.100.2/24"},
	} {
		if err := a.h.Addr(a.dev, a.cidr); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(Options{
		Port: "eth0", Files: &files{}, Log: labtest.Logger(t),
		Listen: func(ifname, addr string) (net.PacketConn, error) {
			var c net.PacketConn
			err := pi.Do(func() error {
				var err error
				c, err = ListenUDP(ifname, addr)
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
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10 s of cancel")
		}
	})
	time.Sleep(200 * time.Millisecond) // let Run bind before the first request

	dir := t.TempDir()
	tftp := func(h interface {
		Run(context.Context, ...string) (string, error)
	}, server, file, out string, extra ...string) error {
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		argv := append([]string{"busybox", "tftp", "-g", "-r", file, "-l", out}, extra...)
		_, err := h.Run(ctx, append(argv, server)...)
		return err
	}
	for _, bs := range [][]string{nil, {"-b", "1428"}} {
		out := filepath.Join(dir, "own")
		os.Remove(out)
		if err := tftp(phone, "10.0.1.2", "cfg10.0.1.1.txt", out, bs...); err != nil {
			t.Fatalf("phone fetching its own file (%v): %v", bs, err)
		}
		got, err := os.ReadFile(out)
		if err != nil || !bytes.Equal(got, content(3000)) {
			t.Errorf("own file (%v): %d bytes, %v; want the 3000-byte file", bs, len(got), err)
		}
	}
	if err := tftp(phone, "10.0.1.2", "cfg10.0.2.1.txt", filepath.Join(dir, "other")); err == nil {
		t.Error("phone fetched another phone's file")
	}
	if err := tftp(up, "198.51.100.1", "cfg198.51.100.2.txt", filepath.Join(dir, "up")); err == nil {
		t.Error("uplink host got a file: the server must only serve the phone port")
	}
}
