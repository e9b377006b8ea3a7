//go:build linux && lab

package peerlab

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

var updateGolden = flag.Bool("update", false, "rewrite test/sipp/golden from this run's captures (flows that pass only)")

const (
	// sippDir holds the scenarios and their golden files.
	sippDir = "../../test/sipp"
	// sipp's ports, apart from baresip's 5060 and its RTP range.
	sippPort      = 5070
	sippMediaPort = 16000
	// flowTimeout bounds one flow, sipp's own timeouts included.
	flowTimeout = 25 * time.Second
	// resumedFor is how long a held call goes on after the resume: long
	// enough for the audio in its RTP to pass CheckTone.
	resumedFor = 2500 * time.Millisecond
)

// flowLab is one peerlab network on which the call flows run one after the
// other, each recorded as a pcap on both phones.
type flowLab struct {
	ctx     context.Context
	n       *Network
	pcapDir string
}

// TestFlows runs the call flows real phones use through the two Pis, in
// both directions: baresip on both ends with audio checked for the basic
// call, hang-up by either side, call-back from the call log and hold; sipp
// scenarios (test/sipp) for the flows baresip cannot drive. Every flow is
// recorded on both phones; what each phone received is checked field by
// field (AddrProblems), for a correct Content-Length, and against a golden
// file of the SIP messages as the far phone received them.
func TestFlows(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTools(t, "sipp", "tcpdump", "ss")
	ctx, n := newNetwork(t, 3*time.Minute)
	pcapDir, err := os.MkdirTemp("", "peerline-flows-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("PEERLINE_LAB_KEEP") != "" {
			t.Logf("captures of every flow kept in %s", pcapDir)
			return
		}
		os.RemoveAll(pcapDir)
	})
	f := &flowLab{ctx: ctx, n: n, pcapDir: pcapDir}

	t.Run("baresip", func(t *testing.T) { f.baresipFlows(t) })
	for _, flow := range []string{
		"hold", "early", "cancel", "noanswer", "busy", "decline", "info",
		"rfc4733", "rtcp", "refer", "options", "timer", "large", "compact",
		"blf", "pickup", "mwi",
	} {
		for _, dir := range []struct {
			name     string
			uac, uas *Node
		}{{"a2b", n.A, n.B}, {"b2a", n.B, n.A}} {
			t.Run(flow+"/"+dir.name, func(t *testing.T) { f.sippFlow(t, flow, dir.name, dir.uac, dir.uas) })
		}
	}
}

// recording is a flow's capture on both phones.
type recording struct {
	f    *flowLab
	name string
	caps map[*Node]*lab.Capture
}

func (f *flowLab) record(t *testing.T, ctx context.Context, name string) *recording {
	t.Helper()
	r := &recording{f: f, name: name, caps: map[*Node]*lab.Capture{}}
	for _, node := range []*Node{f.n.A, f.n.B} {
		path := filepath.Join(f.pcapDir, fmt.Sprintf("%s-phone%s.pcap", name, node.Name))
		c, err := node.PhoneHost.Capture(ctx, "eth0", path, "udp")
		if err != nil {
			t.Fatal(err)
		}
		r.caps[node] = c
	}
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *recording) stop() {
	for _, c := range r.caps {
		c.Stop()
	}
}

// received stops the capture and returns the datagrams each phone
// received from the other phone, in order of arrival.
func (r *recording) received(t *testing.T) map[*Node][]lab.Datagram {
	t.Helper()
	// A last retransmission or RTP packet may still be in flight.
	time.Sleep(100 * time.Millisecond)
	r.stop()
	out := map[*Node][]lab.Datagram{}
	for node, c := range r.caps {
		all, err := lab.ReadDatagrams(c.Path())
		if err != nil {
			t.Fatal(err)
		}
		from := node.AddrOf(r.f.other(node))
		coalesced := 0
		for _, d := range all {
			if d.Dst.Addr() == node.PhoneAddr() && d.Src.Addr() == from {
				parts := SplitGSO(d)
				if len(parts) > 1 {
					coalesced++
				}
				out[node] = append(out[node], parts...)
			} else if d.Dst.Addr() == node.PhoneAddr() && lab.IsSIP(d.Payload) {
				t.Errorf("phone %s received SIP from %s, not from the other phone's %s:\n%s", node.Name, d.Src, from, d.Payload)
			}
		}
		if coalesced > 0 {
			t.Logf("%s: %d packets to phone %s were UDP GSO packets (wireguard-go's GRO), split for checking", r.name, coalesced, node.Name)
		}
	}
	return out
}

func (f *flowLab) other(n *Node) *Node {
	if n == f.n.A {
		return f.n.B
	}
	return f.n.A
}

// checkSIP checks every SIP message each phone received and returns them
// all in order of arrival.
func (f *flowLab) checkSIP(t *testing.T, got map[*Node][]lab.Datagram) []Received {
	t.Helper()
	var all []Received
	for _, node := range []*Node{f.n.A, f.n.B} {
		other := f.other(node)
		peerNode := node.AddrOf(other).As4()[1]
		for _, d := range got[node] {
			if !lab.IsSIP(d.Payload) {
				continue
			}
			first, _, _ := strings.Cut(string(d.Payload), "\r\n")
			for _, p := range AddrProblems(d.Payload, node.PhoneAddr(), peerNode) {
				t.Errorf("phone %s received %q with %s\nfull message:\n%s", node.Name, first, p, d.Payload)
			}
			if p := ContentLengthProblem(d.Payload); p != "" {
				t.Errorf("phone %s received %q with a wrong Content-Length: %s", node.Name, first, p)
			}
			all = append(all, Received{At: node.Name, Datagram: d})
		}
	}
	slices.SortStableFunc(all, func(a, b Received) int { return a.Time.Compare(b.Time) })
	return all
}

// rtp returns the RTP packets among datagrams (version 2, not RTCP, not SIP).
func rtp(ds []lab.Datagram) []lab.Datagram {
	var out []lab.Datagram
	for _, d := range ds {
		p := d.Payload
		if len(p) < 12 || p[0]>>6 != 2 || lab.IsSIP(p) {
			continue
		}
		if pt := p[1] & 0x7f; pt >= 72 && pt <= 76 { // RTCP SR, RR, SDES, BYE, APP
			continue
		}
		out = append(out, d)
	}
	return out
}

func countBetween(ds []lab.Datagram, from, to time.Time) int {
	n := 0
	for _, d := range ds {
		if !d.Time.Before(from) && d.Time.Before(to) {
			n++
		}
	}
	return n
}

// sippFlow runs scenario flow with the UAC on uac's phone and the UAS on
// uas's, recording both phones.
func (f *flowLab) sippFlow(t *testing.T, flow, dir string, uac, uas *Node) {
	ctx, cancel := context.WithTimeout(f.ctx, flowTimeout)
	defer cancel()
	name := flow + "-" + dir
	rec := f.record(t, ctx, name)
	common := lab.SIPpOpts{Port: sippPort, MediaPort: sippMediaPort, Timeout: 20 * time.Second, RecvTimeout: 8 * time.Second}
	uasOpts := common
	uasOpts.Scenario = filepath.Join(sippDir, flow+"_uas.xml")
	uasOpts.Addr = uas.PhoneAddr().String()
	uasRun, err := uas.PhoneHost.StartSIPp(ctx, name+"-uas", uasOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer uasRun.Stop()
	if err := waitUDPBound(ctx, uas.PhoneHost, sippPort); err != nil {
		t.Fatal(err)
	}
	uacOpts := common
	uacOpts.Scenario = filepath.Join(sippDir, flow+"_uac.xml")
	uacOpts.Addr = uac.PhoneAddr().String()
	uacOpts.Remote = netip.AddrPortFrom(uac.AddrOf(uas), sippPort).String()
	uacOpts.Service = "b"
	start := time.Now()
	uacRun, err := uac.PhoneHost.StartSIPp(ctx, name+"-uac", uacOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer uacRun.Stop()
	errUAC, errUAS := waitBoth(ctx, uacRun, uasRun)
	t.Logf("%s: sipp ran %v", name, time.Since(start).Round(time.Millisecond))
	if errUAS != nil {
		t.Errorf("UAS on phone %s (%s, receiving from %s): %v", uas.Name, uas.PhoneAddr(), uas.AddrOf(uac), errUAS)
	}
	if errUAC != nil {
		t.Errorf("UAC on phone %s (%s, calling %s): %v", uac.Name, uac.PhoneAddr(), uacOpts.Remote, errUAC)
	}
	got := rec.received(t)
	msgs := f.checkSIP(t, got)
	if len(msgs) == 0 {
		t.Fatalf("no SIP message crossed between the phones; see %s", f.pcapDir)
	}
	switch flow {
	case "early":
		checkEarlyMedia(t, got[uac], msgs)
	case "rfc4733":
		checkTelephoneEvents(t, got[uas])
	case "large":
		checkFragmented(t, rec, uac, uas)
	}
	title := fmt.Sprintf("sipp %s_uac.xml on phone %s -> %s_uas.xml on phone %s (A numbers B %d, B numbers A %d); SIP as each phone received it",
		flow, uac.Name, flow, uas.Name, f.n.A.AddrOf(f.n.B).As4()[1], f.n.B.AddrOf(f.n.A).As4()[1])
	checkGolden(t, filepath.Join(sippDir, "golden", name+".txt"), Golden(title, msgs))
}

// waitUDPBound waits until something in h listens on UDP port.
func waitUDPBound(ctx context.Context, h *lab.Host, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		out, _ := h.Run(ctx, "ss", "-Hlun", fmt.Sprintf("sport = :%d", port))
		if strings.TrimSpace(out) != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing listening on UDP port %d in %s: %w", port, h, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitBoth waits for both sipps. When one fails, the other is given a
// moment to finish and then stopped: a UAS whose check failed never
// answers, and its UAC would otherwise wait for its receive timeout.
func waitBoth(ctx context.Context, uac, uas *lab.SIPp) (errUAC, errUAS error) {
	var wg sync.WaitGroup
	failed := make(chan struct{}, 2)
	run := func(s *lab.SIPp, err *error) {
		defer wg.Done()
		if *err = s.Wait(ctx); *err != nil {
			failed <- struct{}{}
		}
	}
	wg.Add(2)
	go run(uac, &errUAC)
	go run(uas, &errUAS)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-failed:
		select {
		case <-done:
		case <-time.After(time.Second):
			uac.Stop()
			uas.Stop()
			<-done
		}
	}
	return errUAC, errUAS
}

// checkEarlyMedia checks that the callee's early media (sent after its 183)
// reached the caller's phone before the 200 OK.
func checkEarlyMedia(t *testing.T, atCaller []lab.Datagram, msgs []Received) {
	t.Helper()
	var answered time.Time
	for _, m := range msgs {
		if bytes.HasPrefix(m.Payload, []byte("SIP/2.0 200 ")) && bytes.Contains(m.Payload, []byte(" INVITE\r\n")) {
			answered = m.Time
			break
		}
	}
	if answered.IsZero() {
		t.Error("early media: the caller never received the 200 OK")
		return
	}
	if n := countBetween(rtp(atCaller), time.Time{}, answered); n < 10 {
		t.Errorf("early media: the caller's phone received %d RTP packets before the 200 OK, want ≥ 10 (1 s of g711a.pcap)", n)
	}
}

// checkTelephoneEvents checks that the RFC 4733 events sipp played reached
// the callee's phone byte for byte.
func checkTelephoneEvents(t *testing.T, atCallee []lab.Datagram) {
	t.Helper()
	src, err := lab.ReadDatagrams("/usr/share/sip-tester/dtmf_2833_1.pcap")
	if err != nil {
		t.Fatalf("reading sipp's DTMF pcap: %v", err)
	}
	var want, got [][]byte
	for _, d := range rtp(src) {
		want = append(want, d.Payload[12:])
	}
	for _, d := range rtp(atCallee) {
		if d.Payload[1]&0x7f == 101 {
			got = append(got, d.Payload[12:])
		}
	}
	if len(want) == 0 || !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("RFC 4733 events at the callee = %x, want those of dtmf_2833_1.pcap, %x", got, want)
	}
}

// checkFragmented checks that the large INVITE really left the caller's
// phone as IP fragments, so that the flow tests what it claims.
func checkFragmented(t *testing.T, rec *recording, uac, uas *Node) {
	t.Helper()
	all, err := lab.ReadDatagrams(rec.caps[uac].Path())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range all {
		if d.Src.Addr() == uac.PhoneAddr() && bytes.HasPrefix(d.Payload, []byte("INVITE ")) {
			if d.Fragments < 2 {
				t.Errorf("the large INVITE (%d bytes) left the caller's phone in one packet: the flow does not test fragments", len(d.Payload))
			}
			t.Logf("large INVITE: %d bytes, sent in %d IP fragments", len(d.Payload), d.Fragments)
			return
		}
	}
	t.Error("the caller's phone sent no INVITE")
}

// checkGolden compares got with the golden file at path, or writes it
// with -update when the flow passed.
func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *updateGolden {
		if t.Failed() {
			t.Logf("not updating %s: the flow failed, and a golden file must show a correct flow", path)
			return
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Errorf("no golden file %s: once the flow passes, run the test with -update and review it\nthis run:\n%s", path, got)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("SIP received differs from %s (run with -update if the change is intended):\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff shows the first lines where want and got differ, with context.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	from := max(0, i-3)
	var b strings.Builder
	for k := from; k < i; k++ {
		fmt.Fprintf(&b, "  %s\n", w[k])
	}
	for k := i; k < min(len(w), i+6); k++ {
		fmt.Fprintf(&b, "- %s\n", w[k])
	}
	for k := i; k < min(len(g), i+6); k++ {
		fmt.Fprintf(&b, "+ %s\n", g[k])
	}
	return b.String()
}

// baresipFlows runs the audio flows between two baresip phones.
func (f *flowLab) baresipFlows(t *testing.T) {
	pa, pb, err := f.n.StartPhones(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	// sipp takes over the phone namespaces afterwards; its media ports must
	// not meet baresip's.
	defer pb.Close()
	defer pa.Close()
	aSeesB := "sip:b@" + f.n.A.AddrOf(f.n.B).String()
	bSeesA := "sip:a@" + f.n.B.AddrOf(f.n.A).String()
	for _, c := range []struct {
		name           string
		caller, callee *Phone
		uri, seenAs    string
	}{
		{"A-calls-B", pa, pb, aSeesB, bSeesA},
		{"B-calls-A", pb, pa, bSeesA, aSeesB},
	} {
		t.Run(c.name+"/caller-hangs-up", func(t *testing.T) {
			r, _ := f.baresipCall(t, c.name+"-caller-hangs-up", c.caller, c.callee, c.uri, c.caller, nil)
			if r == nil {
				return
			}
			requireCall(t, r, nil, c.seenAs)
			// Call-back from the call log: the callee dials the address
			// its phone showed for the caller, and hangs up itself.
			t.Run("call-back-callee-hangs-up", func(t *testing.T) {
				back, _ := f.baresipCall(t, c.name+"-call-back", c.callee, c.caller, r.CallerSeenAs, c.caller, nil)
				if back != nil {
					requireCall(t, back, nil, c.uri)
				}
			})
		})
		t.Run(c.name+"/hold-resume", func(t *testing.T) {
			var holdAt, resumeAt time.Time
			r, got := f.baresipCall(t, c.name+"-hold", c.caller, c.callee, c.uri, c.caller, func(ctx context.Context) error {
				if err := sleep(ctx, time.Second); err != nil {
					return err
				}
				if _, err := c.caller.Command(ctx, "hold", ""); err != nil {
					return err
				}
				holdAt = time.Now()
				if err := sleep(ctx, 2*time.Second); err != nil {
					return err
				}
				if _, err := c.caller.Command(ctx, "resume", ""); err != nil {
					return err
				}
				resumeAt = time.Now()
				return sleep(ctx, resumedFor)
			})
			if r == nil {
				return
			}
			if r.CallerSeenAs != c.seenAs {
				t.Errorf("callee showed the caller as %q, want %q", r.CallerSeenAs, c.seenAs)
			}
			checkHold(t, f.pcapDir, c.name, got, c.caller, c.callee, holdAt, resumeAt)
		})
	}
}

// baresipCall is Call with the hang-up by hangup (caller or callee) and an
// optional script run while the call is up instead of a fixed talk time.
// It records the call and returns what each phone received. On failure it
// reports the error and returns nil.
func (f *flowLab) baresipCall(t *testing.T, name string, caller, callee *Phone, uri string, hangup *Phone, script func(context.Context) error) (*CallResult, map[*Node][]lab.Datagram) {
	t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	rec := f.record(t, ctx, "baresip-"+name)
	r := &CallResult{Caller: caller, Callee: callee, Dialled: uri}
	fail := func(format string, args ...any) (*CallResult, map[*Node][]lab.Datagram) {
		t.Errorf("%s: "+format, append([]any{name}, args...)...)
		f.checkSIP(t, rec.received(t))
		return nil, nil
	}
	start := time.Now()
	if err := caller.Dial(ctx, uri); err != nil {
		return fail("dialling %s: %v", uri, err)
	}
	est, err := caller.WaitEstablished(ctx)
	if err != nil {
		return fail("call to %s not established: %v", uri, err)
	}
	r.Setup = time.Since(start)
	r.CalleeSeenAs = est.PeerURI
	in, err := callee.WaitIncoming(ctx)
	if err != nil {
		return fail("callee never saw the call: %v", err)
	}
	r.CallerSeenAs = in.PeerURI
	if _, err := callee.WaitEstablished(ctx); err != nil {
		return fail("callee: %v", err)
	}
	if script == nil {
		script = func(ctx context.Context) error { return sleep(ctx, 2*time.Second) }
	}
	if err := script(ctx); err != nil {
		return fail("during the call: %v", err)
	}
	if err := hangup.Hangup(ctx); err != nil {
		return fail("hanging up: %v", err)
	}
	for _, p := range []*Phone{caller, callee} {
		if _, err := p.WaitClosed(ctx); err != nil {
			return fail("%s did not see the hang-up: %v", p.URI(), err)
		}
	}
	r.CalleeHeard, r.CalleeErr = heard(ctx, callee, caller.ToneHz)
	r.CallerHeard, r.CallerErr = heard(ctx, caller, callee.ToneHz)
	r.CallerStats, _ = caller.LastCallStats(ctx)
	r.CalleeStats, _ = callee.LastCallStats(ctx)
	got := rec.received(t)
	f.checkSIP(t, got)
	return r, got
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var sdpDirection = regexp.MustCompile(`(?m)^a=(sendrecv|sendonly|recvonly|inactive)\r?$`)

// checkHold checks the hold and resume re-INVITEs as the held phone got
// them, and that RTP flows both ways again after the resume.
// baresip 1.0 stops recording what it receives when a call is put on
// hold and does not start again on resume, so the audio after the resume is
// checked in the RTP each phone received instead.
func checkHold(t *testing.T, dir, name string, got map[*Node][]lab.Datagram, holder, held *Phone, holdAt, resumeAt time.Time) {
	t.Helper()
	var dirs []string
	for _, d := range got[held.Node] {
		if bytes.HasPrefix(d.Payload, []byte("INVITE ")) {
			if m := sdpDirection.FindSubmatch(d.Payload); m != nil {
				dirs = append(dirs, string(m[1]))
			} else {
				dirs = append(dirs, "sendrecv (no a=)")
			}
		}
	}
	if len(dirs) < 3 || !strings.HasPrefix(dirs[len(dirs)-1], "sendrecv") || !slices.Contains(dirs, "sendonly") && !slices.Contains(dirs, "inactive") {
		t.Errorf("INVITEs the held phone received offered %v, want the call, a hold (sendonly or inactive) and a resume (sendrecv)", dirs)
	}
	toHeld, toHolder := rtp(got[held.Node]), rtp(got[holder.Node])
	hangup := resumeAt.Add(resumedFor)
	settle := 500 * time.Millisecond
	t.Logf("hold: RTP to the held phone %d / %d / %d, to the holding phone %d / %d / %d (before / on hold / after resume)",
		countBetween(toHeld, time.Time{}, holdAt), countBetween(toHeld, holdAt.Add(settle), resumeAt), countBetween(toHeld, resumeAt.Add(settle), hangup),
		countBetween(toHolder, time.Time{}, holdAt), countBetween(toHolder, holdAt.Add(settle), resumeAt), countBetween(toHolder, resumeAt.Add(settle), hangup))
	// 2 s at 50 packets/s is 100; allow for a slow machine.
	for _, c := range []struct {
		name string
		ds   []lab.Datagram
	}{{"to the held phone", toHeld}, {"to the holding phone", toHolder}} {
		if n := countBetween(c.ds, resumeAt.Add(settle), hangup); n < 60 {
			t.Errorf("RTP %s after resume: %d packets in 2 s, want ≥ 60", c.name, n)
		}
	}
	for _, c := range []struct {
		at   *Phone
		from *Phone
	}{{held, holder}, {holder, held}} {
		path := filepath.Join(dir, fmt.Sprintf("baresip-%s-hold-after-resume-at-%s", name, c.at.Node.Name))
		a, err := rtpAudio(rtp(got[c.at.Node]), resumeAt.Add(settle), hangup, path)
		if err == nil {
			err = lab.CheckTone(a, c.from.ToneHz)
		}
		if err != nil {
			t.Errorf("audio phone %s received after the resume: %v", c.at.Node.Name, err)
		} else {
			t.Logf("audio phone %s received after the resume: %v", c.at.Node.Name, a)
		}
	}
	// The holding phone said sendonly: the held phone must not send.
	if n := countBetween(toHolder, holdAt.Add(settle), resumeAt); n > 5 {
		t.Errorf("RTP to the holding phone while on hold: %d packets, want none (it offered a=sendonly)", n)
	}
}

// rtpAudio writes the G.711 payloads of the RTP packets received between
// from and to into path (plus .ul or .al, which tells sox the encoding)
// and measures them.
func rtpAudio(ds []lab.Datagram, from, to time.Time, path string) (lab.Audio, error) {
	var audio []byte
	var pt byte = 255
	for _, d := range ds {
		if d.Time.Before(from) || !d.Time.Before(to) {
			continue
		}
		p := d.Payload[1] & 0x7f
		if pt == 255 && (p == 0 || p == 8) {
			pt = p
		}
		if p == pt {
			audio = append(audio, d.Payload[12:]...)
		}
	}
	if pt == 255 {
		return lab.Audio{}, fmt.Errorf("no G.711 RTP between %v and %v", from.Format(time.StampMilli), to.Format(time.StampMilli))
	}
	path += map[byte]string{0: ".ul", 8: ".al"}[pt]
	if err := os.WriteFile(path, audio, 0o644); err != nil {
		return lab.Audio{}, err
	}
	return lab.AnalyzeWAV(path)
}
