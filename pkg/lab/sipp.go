package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SIPpOpts is one run of sipp (Debian package sip-tester) with a scenario
// file: one call (-m 1), bounded in time, tracing its errors and messages to
// files so that a failed check can be reported with what sipp received.
type SIPpOpts struct {
	// Scenario is the path of the scenario XML (required).
	Scenario string
	// Addr is the local address sipp binds for SIP and media (-i, -mi).
	Addr string
	// Port is the local SIP port (-p); 5060 if zero.
	Port int
	// MediaPort is the local media port (-mp, [media_port]); sipp's
	// default 6000 if zero.
	MediaPort int
	// Remote is "host:port" a UAC sends to; empty for a UAS.
	Remote string
	// Service is the user part of the Request-URI (-s, [service]).
	Service string
	// Keys are scenario keywords (-key name value): [name] in messages.
	Keys map[string]string
	// Timeout bounds the whole run (-timeout with -timeout_error, so that
	// reaching it is a failure); 20 s if zero.
	Timeout time.Duration
	// RecvTimeout bounds each <recv> that has no timeout of its own
	// (-recv_timeout); 10 s if zero.
	RecvTimeout time.Duration
}

// SIPp is a running sipp.
type SIPp struct {
	proc    *Proc
	opts    SIPpOpts
	errFile string
	msgFile string
}

// SIPpArgs is the sipp command line for opts, writing its error and message
// traces to errFile and msgFile.
func SIPpArgs(opts SIPpOpts, errFile, msgFile string) []string {
	port := opts.Port
	if port == 0 {
		port = 5060
	}
	timeout := orDefault(opts.Timeout, 20*time.Second)
	recv := orDefault(opts.RecvTimeout, 10*time.Second)
	argv := []string{"sipp", "-sf", opts.Scenario,
		"-i", opts.Addr, "-mi", opts.Addr, "-p", strconv.Itoa(port),
		"-m", "1", "-l", "1", "-nostdin",
		"-timeout", strconv.FormatInt(int64(timeout/time.Second), 10) + "s", "-timeout_error",
		"-recv_timeout", strconv.FormatInt(recv.Milliseconds(), 10),
		"-trace_err", "-error_file", errFile,
		"-trace_msg", "-message_file", msgFile,
	}
	if opts.MediaPort != 0 {
		argv = append(argv, "-mp", strconv.Itoa(opts.MediaPort))
	}
	if opts.Service != "" {
		argv = append(argv, "-s", opts.Service)
	}
	keys := make([]string, 0, len(opts.Keys))
	for k := range opts.Keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		argv = append(argv, "-key", k, opts.Keys[k])
	}
	if opts.Remote != "" {
		argv = append(argv, opts.Remote)
	}
	return argv
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// StartSIPp starts sipp in h as described by opts; name names its log and
// trace files in the lab directory. Wait collects the result. sipp runs in
// the lab directory, so files a scenario writes land there.
func (h *Host) StartSIPp(ctx context.Context, name string, opts SIPpOpts) (*SIPp, error) {
	if _, err := exec.LookPath("sipp"); err != nil {
		return nil, fmt.Errorf("sipp scenarios need sipp (apt-get install sip-tester): %w", err)
	}
	if opts.Scenario == "" || opts.Addr == "" {
		return nil, errors.New("sipp: scenario and address are required")
	}
	scen, err := filepath.Abs(opts.Scenario)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(scen); err != nil {
		return nil, fmt.Errorf("sipp scenario: %w", err)
	}
	opts.Scenario = scen
	base := uniquePath(h.lab.dir, safeName(h.name+"-sipp-"+name), "")
	s := &SIPp{opts: opts, errFile: base + "-errors.log", msgFile: base + "-messages.log"}
	argv := append([]string{"env", "-C", h.lab.dir}, SIPpArgs(opts, s.errFile, s.msgFile)...)
	// The run's own -timeout ends it; ctx is the backstop.
	s.proc, err = h.Start(ctx, "sipp-"+name, argv...)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Wait waits for sipp to end, bounded by ctx (after which it is stopped),
// and returns nil if its one call succeeded. Otherwise the error holds
// sipp's own error trace, which names the failed check and quotes the
// message it was checking.
func (s *SIPp) Wait(ctx context.Context) error {
	select {
	case <-s.proc.Done():
	case <-ctx.Done():
		s.proc.Stop(stopGrace)
		return fmt.Errorf("sipp %s: %w; %s", filepath.Base(s.opts.Scenario), ctx.Err(), s.report())
	}
	if err := s.proc.Err(); err != nil {
		return fmt.Errorf("sipp %s on %s failed (%v); %s", filepath.Base(s.opts.Scenario), s.proc.Host(), err, s.report())
	}
	return nil
}

// Stop ends sipp at once (a UAS whose UAC never came).
func (s *SIPp) Stop() error { return s.proc.Stop(stopGrace) }

// report is what to show of a failed run: sipp's error trace, or the tail
// of its output when it failed before tracing anything.
func (s *SIPp) report() string {
	if b, err := os.ReadFile(s.errFile); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return "sipp errors:\n" + limitText(string(b), 6000) + "\nall messages: " + s.msgFile
	}
	tail, _ := tailFile(s.proc.LogPath(), 20)
	return "sipp output:\n" + tail
}

// limitText cuts s to about n bytes, keeping its start, which names what
// failed first.
func limitText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n[… cut]"
}
