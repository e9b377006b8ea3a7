// Command testprogress turns `go test -json` into what `go test` prints
// without -json, plus progress: a line when a package's tests start, and a
// line for every top-level test still running after -slow, so a run of the
// lab tests (minutes per package) never sits silent. make test pipes into it.
//
// The closing lines go test prints (ok, FAIL, ?, build errors) and the
// output of every failed test are kept as they are: CI reads them. The
// output of tests that pass is dropped, as go test drops it; skipped tests
// are counted and their reasons summed up at the end, because a lab test
// that skips (no root, a missing tool) should not go unnoticed. Lines that
// are not JSON (go vet, a panic of go test itself) are passed through.
//
// It exits 1 if any test or build failed, so a pipeline without pipefail
// still fails.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json's TestEvent, plus the
// build events of go 1.24).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// printer holds what is known about the run. Its methods are called from one
// goroutine; it writes to out and never reads the clock itself.
type printer struct {
	out   io.Writer
	start time.Time
	slow  time.Duration

	// output buffered per package and test until the test ends.
	buf map[string][]string
	// running top-level tests: when they started, and whether their slow
	// line was printed.
	running map[string]*runningTest
	// started packages whose start line waits for their first test, so
	// packages without tests print only go test's "?" line.
	started map[string]bool
	failed  bool
	skips   map[string]int // reason -> tests skipped for it
}

type runningTest struct {
	started   time.Time
	announced bool
}

func newPrinter(out io.Writer, start time.Time, slow time.Duration) *printer {
	return &printer{out: out, start: start, slow: slow,
		buf: map[string][]string{}, running: map[string]*runningTest{}, started: map[string]bool{}, skips: map[string]int{}}
}

func (p *printer) stamp(now time.Time) string {
	return "[" + now.Sub(p.start).Round(time.Second).String() + "]"
}

// line handles one line of input read at now.
func (p *printer) line(b []byte, now time.Time) {
	var e event
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &e) != nil || e.Action == "" {
		fmt.Fprintf(p.out, "%s\n", b)
		return
	}
	p.event(e, now)
}

func (p *printer) event(e event, now time.Time) {
	key := e.Package + " " + e.Test
	switch {
	case e.Action == "build-output":
		fmt.Fprint(p.out, e.Output)
	case e.Action == "build-fail":
		p.failed = true
	case e.Test == "":
		p.packageEvent(e, now)
	case e.Action == "run":
		if p.started[e.Package] {
			delete(p.started, e.Package)
			fmt.Fprintf(p.out, "%s %s ...\n", p.stamp(now), e.Package)
		}
		if !strings.Contains(e.Test, "/") {
			p.running[key] = &runningTest{started: now}
		}
	case e.Action == "output":
		p.buf[key] = append(p.buf[key], e.Output)
	case e.Action == "pass" || e.Action == "fail" || e.Action == "skip":
		if r := p.running[key]; r != nil && r.announced {
			fmt.Fprintf(p.out, "%s   %s: %s after %s\n", p.stamp(now), e.Test, verb(e.Action), time.Duration(e.Elapsed*float64(time.Second)).Round(time.Second))
		}
		delete(p.running, key)
		switch e.Action {
		case "fail":
			p.failed = true
			p.flush(key)
		case "skip":
			p.skips[skipReason(p.buf[key])]++
		}
		delete(p.buf, key)
	}
}

func (p *printer) packageEvent(e event, now time.Time) {
	switch e.Action {
	case "start":
		p.started[e.Package] = true
	case "output":
		// go test prints PASS only with -v.
		if e.Output != "PASS\n" {
			fmt.Fprint(p.out, e.Output)
		}
	case "fail":
		p.failed = true
		fallthrough
	case "pass", "skip":
		delete(p.started, e.Package)
		// A test that never ended (the binary panicked or timed out) has
		// its output here and nowhere else.
		var left []string
		for key := range p.buf {
			if strings.HasPrefix(key, e.Package+" ") {
				left = append(left, key)
			}
		}
		sort.Strings(left)
		for _, key := range left {
			if e.Action == "fail" {
				p.flush(key)
			}
			delete(p.buf, key)
		}
		for key := range p.running {
			if strings.HasPrefix(key, e.Package+" ") {
				delete(p.running, key)
			}
		}
	}
}

// flush prints a failed test's output as go test does without -v: its
// === lines dropped.
func (p *printer) flush(key string) {
	for _, s := range p.buf[key] {
		if strings.HasPrefix(s, "=== ") {
			continue
		}
		fmt.Fprint(p.out, s)
	}
}

// tick prints a line for each top-level test that has been running longer
// than p.slow and was not announced yet.
func (p *printer) tick(now time.Time) {
	var slow []string
	for key, r := range p.running {
		if !r.announced && now.Sub(r.started) >= p.slow {
			r.announced = true
			slow = append(slow, key)
		}
	}
	sort.Strings(slow)
	for _, key := range slow {
		_, test, _ := strings.Cut(key, " ")
		fmt.Fprintf(p.out, "%s   %s: running for %s ...\n", p.stamp(now), test, now.Sub(p.running[key].started).Round(time.Second))
	}
}

// done prints the skip summary and the total time.
func (p *printer) done(now time.Time) {
	if len(p.skips) > 0 {
		n := 0
		reasons := make([]string, 0, len(p.skips))
		for r, c := range p.skips {
			n += c
			reasons = append(reasons, r)
		}
		sort.Slice(reasons, func(i, j int) bool {
			return p.skips[reasons[i]] > p.skips[reasons[j]] || p.skips[reasons[i]] == p.skips[reasons[j]] && reasons[i] < reasons[j]
		})
		fmt.Fprintf(p.out, "%d tests skipped:\n", n)
		for _, r := range reasons {
			fmt.Fprintf(p.out, "  %4d  %s\n", p.skips[r], r)
		}
	}
	fmt.Fprintf(p.out, "tests took %s\n", now.Sub(p.start).Round(time.Second))
}

func verb(action string) string {
	return map[string]string{"pass": "passed", "fail": "FAILED", "skip": "skipped"}[action]
}

// skipReason is the message t.Skip logged: the last output line before the
// --- SKIP line, without its file:line prefix.
func skipReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		s := strings.TrimSpace(lines[i])
		if s == "" || strings.HasPrefix(s, "--- ") || strings.HasPrefix(s, "=== ") {
			continue
		}
		if _, msg, ok := strings.Cut(s, ".go:"); ok {
			if _, after, ok := strings.Cut(msg, ": "); ok {
				return after
			}
		}
		return s
	}
	return "(no reason given)"
}

func main() {
	slow := flag.Duration("slow", 30*time.Second, "print a line for each top-level test running longer than this")
	flag.Parse()
	p := newPrinter(os.Stdout, time.Now(), *slow)
	lines := make(chan []byte)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 64*1024), 16<<20)
		for sc.Scan() {
			lines <- append([]byte(nil), sc.Bytes()...)
		}
		if err := sc.Err(); err != nil {
			fmt.Fprintf(os.Stderr, "testprogress: reading go test's output: %v\n", err)
		}
		close(lines)
	}()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case b, ok := <-lines:
			if !ok {
				p.done(time.Now())
				if p.failed {
					os.Exit(1)
				}
				return
			}
			p.line(b, time.Now())
		case now := <-t.C:
			p.tick(now)
		}
	}
}
