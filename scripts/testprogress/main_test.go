package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRun replays a recorded `go test -json ./...` (testdata/run.json: a
// package with a passing, a failing, a skipping and a 2.5 s test, one that
// does not build, one without tests), one line per second of a fake clock.
func TestRun(t *testing.T) {
	b, err := os.ReadFile("testdata/run.json")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPrinter(&out, t0, 2*time.Second)
	now := t0
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		p.line(l, now)
		// TestSlow runs from its run event to its pass; let the ticker see it.
		if bytes.Contains(l, []byte(`"Action":"run","Package":"tpx/a","Test":"TestSlow"`)) {
			for range 3 {
				now = now.Add(time.Second)
				p.tick(now)
			}
		}
	}
	p.line([]byte("not json: passed through"), now)
	p.done(now)
	want := `# tpx/b [tpx/b.test]
b/b.go:2:23: cannot use "s" (untyped string constant) as int value in return statement
FAIL	tpx/b [build failed]
?   	tpx/c	[no test files]
[0s] tpx/a ...
    a_test.go:4: boom
--- FAIL: TestFail/sub (0.00s)
--- FAIL: TestFail (0.00s)
[2s]   TestSlow: running for 2s ...
[3s]   TestSlow: passed after 3s
FAIL
FAIL	tpx/a	2.523s
not json: passed through
1 tests skipped:
     1  lab test needs root
tests took 3s
`
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
	if !p.failed {
		t.Error("failed = false after a failing test and a failed build")
	}
}

// TestQuietPass: a passing run prints the start and closing lines only; the
// passing test's log is dropped, as go test drops it.
func TestQuietPass(t *testing.T) {
	in := `{"Action":"start","Package":"x"}
{"Action":"run","Package":"x","Test":"TestA"}
{"Action":"output","Package":"x","Test":"TestA","Output":"    a_test.go:3: chatter\n"}
{"Action":"pass","Package":"x","Test":"TestA","Elapsed":0.1}
{"Action":"output","Package":"x","Output":"PASS\n"}
{"Action":"output","Package":"x","Output":"ok  \tx\t0.1s\n"}
{"Action":"pass","Package":"x","Elapsed":0.1}`
	var out bytes.Buffer
	t0 := time.Unix(0, 0)
	p := newPrinter(&out, t0, time.Minute)
	for _, l := range strings.Split(in, "\n") {
		p.line([]byte(l), t0)
	}
	if got, want := out.String(), "[0s] x ...\nok  \tx\t0.1s\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	if p.failed {
		t.Error("failed = true after a passing run")
	}
}

// TestUnfinishedTest: when a test binary dies mid-test (panic, timeout), the
// running test's output is printed with the package's failure.
func TestUnfinishedTest(t *testing.T) {
	in := `{"Action":"start","Package":"x"}
{"Action":"run","Package":"x","Test":"TestHang"}
{"Action":"output","Package":"x","Test":"TestHang","Output":"=== RUN   TestHang\n"}
{"Action":"output","Package":"x","Test":"TestHang","Output":"panic: test timed out after 1s\n"}
{"Action":"output","Package":"x","Output":"FAIL\tx\t1.0s\n"}
{"Action":"fail","Package":"x","Elapsed":1}`
	var out bytes.Buffer
	t0 := time.Unix(0, 0)
	p := newPrinter(&out, t0, time.Minute)
	for _, l := range strings.Split(in, "\n") {
		p.line([]byte(l), t0)
	}
	if got, want := out.String(), "[0s] x ...\nFAIL\tx\t1.0s\npanic: test timed out after 1s\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	if !p.failed || len(p.running) != 0 || len(p.buf) != 0 {
		t.Errorf("after the package failed: failed %v, %d running, %d buffered", p.failed, len(p.running), len(p.buf))
	}
}

func TestSkipReason(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"t.Skip", []string{"=== RUN   TestX\n", "    x_test.go:12: lab test needs root: run `sudo make test`\n", "--- SKIP: TestX (0.00s)\n"}, "lab test needs root: run `sudo make test`"},
		{"no file prefix", []string{"reason\n", "--- SKIP: TestX (0.00s)\n"}, "reason"},
		{"SkipNow", []string{"=== RUN   TestX\n", "--- SKIP: TestX (0.00s)\n"}, "(no reason given)"},
	} {
		if got := skipReason(tc.lines); got != tc.want {
			t.Errorf("%s: skipReason = %q, want %q", tc.name, got, tc.want)
		}
	}
}
