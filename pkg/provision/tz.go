package provision

import (
	"fmt"
	"strconv"
	"time"
)

// Phones do not know IANA zone names (Grandstream wants a POSIX TZ string,
// Yealink an offset plus DST rules), so the rules are read back from the
// zone's transitions in the current year. A zone whose rules change that year
// gets the offset in force at its end and no DST.

// rules is a zone's standard offset and, if it has DST, when DST starts and
// ends, as wall-clock times in the offset in force just before each change.
type rules struct {
	stdName, dstName string
	std, dst         int // seconds east of UTC
	hasDST           bool
	start, end       change
}

type change struct {
	month   time.Month
	week    int // 1-4, 5 = last
	weekday time.Weekday
	secs    int // seconds after local midnight
}

func zoneRules(name string, year int) (rules, error) {
	if name == "" {
		return rules{stdName: "UTC"}, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return rules{}, fmt.Errorf("%w: time zone %q: %v; use an IANA name such as \"Europe/Berlin\", or none for UTC", ErrInvalid, name, err)
	}
	var trans []time.Time
	t := time.Date(year, time.January, 1, 0, 0, 0, 0, loc)
	for range 4 {
		_, end := t.ZoneBounds()
		if end.IsZero() || end.Year() > year {
			break
		}
		trans = append(trans, end)
		t = end
	}
	if len(trans) != 2 || trans[0].IsDST() == trans[1].IsDST() {
		name, off := time.Date(year, time.December, 31, 12, 0, 0, 0, loc).Zone()
		return rules{stdName: name, std: off}, nil
	}
	on, off := trans[0], trans[1]
	if !on.IsDST() {
		on, off = off, on
	}
	r := rules{hasDST: true}
	r.dstName, r.dst = on.Zone()
	r.stdName, r.std = off.Zone()
	r.start = changeAt(on, r.std)
	r.end = changeAt(off, r.dst)
	return r, nil
}

// changeAt describes instant tr as the wall clock of offset before it.
func changeAt(tr time.Time, before int) change {
	w := tr.UTC().Add(time.Duration(before) * time.Second)
	daysInMonth := time.Date(w.Year(), w.Month()+1, 0, 0, 0, 0, 0, time.UTC).Day()
	week := (w.Day()-1)/7 + 1
	if w.Day()+7 > daysInMonth {
		week = 5
	}
	return change{month: w.Month(), week: week, weekday: w.Weekday(), secs: w.Hour()*3600 + w.Minute()*60 + w.Second()}
}

// posixTZ returns the zone as a POSIX TZ string in the explicit form of
// Grandstream's own time zone list (gxp16xx config template, P64), e.g.
// "CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00".
func posixTZ(name string) (string, error) {
	r, err := zoneRules(name, time.Now().Year())
	if err != nil {
		return "", err
	}
	s := posixName(r.stdName, "STD") + posixOffset(r.std)
	if !r.hasDST {
		return s, nil
	}
	return s + posixName(r.dstName, "DST") + posixOffset(r.dst) + "," + posixChange(r.start) + "," + posixChange(r.end), nil
}

// posixName keeps an abbreviation only if it is the plain alphabetic kind
// POSIX allows unquoted; numeric ones ("+03") get a neutral name.
func posixName(abbr, fallback string) string {
	if len(abbr) < 3 {
		return fallback
	}
	for _, c := range abbr {
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') {
			return fallback
		}
	}
	return abbr
}

// posixOffset writes seconds east of UTC the POSIX way: west is positive.
func posixOffset(east int) string {
	west := -east
	sign := ""
	if west < 0 {
		sign, west = "-", -west
	}
	h, m, s := west/3600, west/60%60, west%60
	out := sign + strconv.Itoa(h)
	if m != 0 || s != 0 {
		out += fmt.Sprintf(":%02d", m)
	}
	if s != 0 {
		out += fmt.Sprintf(":%02d", s)
	}
	return out
}

func posixChange(c change) string {
	return fmt.Sprintf("M%d.%d.%d/%02d:%02d:%02d", c.month, c.week, c.weekday, c.secs/3600, c.secs/60%60, c.secs%60)
}

// yealinkTZ is what the Yealink template needs: local_time.time_zone and, with
// DST, start and end as month/week/weekday/hour with Monday = 1 and
// Sunday = 7 (wazo-provd-plugins wazo-yealink common.py _format_dst_change).
type yealinkTZ struct {
	YealinkZone     string
	YealinkDST      bool
	YealinkDSTStart string
	YealinkDSTEnd   string
}

func yealinkZone(name string) (yealinkTZ, error) {
	r, err := zoneRules(name, time.Now().Year())
	if err != nil {
		return yealinkTZ{}, err
	}
	y := yealinkTZ{YealinkZone: yealinkOffset(r.std), YealinkDST: r.hasDST}
	if r.hasDST {
		y.YealinkDSTStart = yealinkChange(r.start)
		y.YealinkDSTEnd = yealinkChange(r.end)
	}
	return y, nil
}

// yealinkOffset writes "+1", "-5", "0"; half-hour zones as "+5:30" (the
// Yealink list has such zones; the exact spelling is unconfirmed).
func yealinkOffset(east int) string {
	if east == 0 {
		return "0"
	}
	sign := "+"
	if east < 0 {
		sign, east = "-", -east
	}
	out := sign + strconv.Itoa(east/3600)
	if m := east / 60 % 60; m != 0 {
		out += fmt.Sprintf(":%02d", m)
	}
	return out
}

func yealinkChange(c change) string {
	wd := int(c.weekday)
	if wd == 0 {
		wd = 7
	}
	return fmt.Sprintf("%d/%d/%d/%d", c.month, c.week, wd, c.secs/3600)
}
