package wpactl

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// fakeSupplicant answers one command per datagram the way wpa_supplicant
// does, after an unsolicited event.
func fakeSupplicant(t *testing.T, dir, iface, answer string) <-chan string {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, iface), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 256)
		n, from, err := c.ReadFromUnix(buf)
		if err != nil {
			return
		}
		got <- string(buf[:n])
		c.WriteToUnix([]byte("<3>CTRL-EVENT-SCAN-STARTED "), from)
		c.WriteToUnix([]byte(answer+"\n"), from)
	}()
	return got
}

func TestReconfigure(t *testing.T) {
	dir, local := t.TempDir(), t.TempDir()
	got := fakeSupplicant(t, dir, "wlan0", "OK")
	if err := Reconfigure(context.Background(), dir, "wlan0", local); err != nil {
		t.Fatal(err)
	}
	if cmd := <-got; cmd != "RECONFIGURE" {
		t.Errorf("sent %q, want RECONFIGURE", cmd)
	}
	if entries, _ := os.ReadDir(local); len(entries) != 0 {
		t.Errorf("reply socket left behind: %v", entries)
	}
}

func TestReconfigureRefused(t *testing.T) {
	dir := t.TempDir()
	fakeSupplicant(t, dir, "wlan0", "FAIL")
	if err := Reconfigure(context.Background(), dir, "wlan0", t.TempDir()); err == nil {
		t.Error("FAIL taken for OK")
	}
}

func TestReconfigureNotRunning(t *testing.T) {
	if err := Reconfigure(context.Background(), t.TempDir(), "wlan0", t.TempDir()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Reconfigure without a supplicant = %v, want ErrNotRunning", err)
	}
}
