// Package wpactl asks a running wpa_supplicant to re-read its config file,
// so that a Wi-Fi name, password or country changed in the web console
// applies at once instead of at the next start. It speaks wpa_supplicant's
// control interface (a Unix datagram socket per interface under
// ctrl_interface, one text command per datagram) and needs nothing else.
package wpactl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultDir is the ctrl_interface the boot step writes into the Wi-Fi
// file (pkg/bootconfig).
const DefaultDir = "/run/wpa_supplicant"

// ErrNotRunning means no wpa_supplicant listens for the interface (no
// Wi-Fi uplink, or it has not started yet); the file applies when it does.
var ErrNotRunning = errors.New("wpa_supplicant is not running for this interface")

var seq atomic.Uint64

// Reconfigure sends RECONFIGURE to the wpa_supplicant of iface, whose
// control socket is in dir; the reply comes back to a socket made in
// localDir (it must be writable).
func Reconfigure(ctx context.Context, dir, iface, localDir string) error {
	remote := filepath.Join(dir, iface)
	if _, err := os.Stat(remote); errors.Is(err, os.ErrNotExist) {
		return ErrNotRunning
	}
	local := filepath.Join(localDir, "wpactl-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatUint(seq.Add(1), 10))
	os.Remove(local)
	c, err := net.DialUnix("unixgram", &net.UnixAddr{Name: local, Net: "unixgram"}, &net.UnixAddr{Name: remote, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("wpa_supplicant control socket %s: %w", remote, err)
	}
	defer os.Remove(local)
	defer c.Close()
	dl := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	c.SetDeadline(dl)
	if _, err := c.Write([]byte("RECONFIGURE")); err != nil {
		return fmt.Errorf("wpa_supplicant control socket %s: %w", remote, err)
	}
	buf := make([]byte, 256)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("no answer from wpa_supplicant on %s: %w", remote, err)
		}
		reply := strings.TrimSpace(string(buf[:n]))
		// Unsolicited event messages start with "<level>".
		if strings.HasPrefix(reply, "<") {
			continue
		}
		if reply != "OK" {
			return fmt.Errorf("wpa_supplicant refused to re-read its config: %q", reply)
		}
		return nil
	}
}
