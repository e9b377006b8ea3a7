// Package sdnotify tells systemd about the daemon's state (sd_notify), so
// that a Type=notify unit is READY only once the phone port and tunnels work.
// Without NOTIFY_SOCKET (run by hand, in the lab) it does nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// Ready is the state line for a finished start-up.
const Ready = "READY=1"

// Stopping is the state line for a clean shutdown.
const Stopping = "STOPPING=1"

// Notify sends state to systemd; sent reports whether anyone was listening.
func Notify(state string) (sent bool, err error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("notifying systemd: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("notifying systemd: %w", err)
	}
	return true, nil
}
