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

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

// TestLabBusyboxTFTP fetches files with busybox tftp from a phone namespace
// while the server is bound to the pi's phone port; a host on the pi's
// uplink gets nothing.
func TestLabBusyboxTFTP(t *testing.T) {
	pp := labtest.NewPhonePort(t, labtest.New(t))
	labtest.RequireTools(t, "busybox")
	phone, up := pp.Phone, pp.Up
	s, err := New(Options{
		Port: "eth0", Files: &files{}, Log: labtest.Logger(t),
		Listen: func(ifname, addr string) (net.PacketConn, error) {
			return lab.In(pp.Pi, func() (net.PacketConn, error) { return ListenUDP(ifname, addr) })
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	labtest.Serve(t, s.Run)
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
