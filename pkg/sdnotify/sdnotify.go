// Package sdnotify tells systemd about the daemon's state (sd_notify), so
// that a Type=notify unit is READY only once the phone port and tunnels work.
// Without NOTIFY_SOCKET (run by hand, in the lab) it does nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
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

// Watchdog is the keep-alive line for WatchdogSec=.
const Watchdog = "WATCHDOG=1"

// WatchdogInterval returns how often to send Watchdog: half the interval
// systemd asked for in WATCHDOG_USEC, so one late ping is not fatal. It is 0
// when no watchdog is armed for this process.
func WatchdogInterval() time.Duration {
	usec, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 63)
	if err != nil || usec == 0 {
		return 0
	}
	// WATCHDOG_PID names the process the watchdog is for; a child that
	// inherited the environment must not ping on its parent's behalf.
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}
