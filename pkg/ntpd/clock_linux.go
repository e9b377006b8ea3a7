package ntpd

import (
	"time"

	"golang.org/x/sys/unix"
)

// systemClock asks the kernel whether the clock is synchronized: the time
// daemon clears STA_UNSYNC once it has set the clock, and the kernel sets
// it again when maxerror exceeds 16 s without an update.
func systemClock() Clock {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil || state == unix.TIME_ERROR || tx.Status&unix.STA_UNSYNC != 0 {
		return Clock{}
	}
	return Clock{Synced: true, MaxError: time.Duration(tx.Maxerror) * time.Microsecond}
}
