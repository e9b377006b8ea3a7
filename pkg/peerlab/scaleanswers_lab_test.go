//go:build linux && lab

package peerlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/numplan"
)

// scaleAnswerRounds is how many times each answer is timed, one after the
// other (issue 16 item 5: each answer ≤ 50 ms with 253 peers).
const scaleAnswerRounds = 20

// answerTimes is, per answer, the median and the max of its rounds in ms:
//
//   - peers_cli, status_cli: `peerline peers --json` and `peerline status
//     --json`, run as a user on the Pi runs them (a new process talking to
//     the daemon's control socket, a file that no network namespace
//     hides), so including the process start;
//   - status_api: the control socket's status command called in-process
//     (pkg/control), the daemon's part of both;
//   - status_page: the status page listing the peers (GET / on the line's
//     gateway), over HTTP from the phone's namespace, a new connection each
//     time as a browser opening it does;
//   - phonebook: the Yealink handset's phonebook (GET
//     /phonebook/yealink.xml), over HTTP from the handset, which the
//     provisioning server answers only to the phone holding the line's
//     DHCP lease: the handset leases its line before the first round.
type answerTimes map[string][]float64

// timeAnswers times each answer scaleAnswerRounds times against the
// running node; an answer that fails or lacks the peers is an error, and
// is left out of the times while the others are still measured.
func (s *scaleNet) timeAnswers(ctx context.Context) (answerTimes, error) {
	sock := control.SocketPath(s.node.Config.RunDir)
	want := len(s.node.Config.Peers)
	// A name that only the peers' table shows, to know the page is whole.
	lastName := s.node.Config.Peers[want-1].Name
	web := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return s.node.PhoneHost.Dial(ctx, network, addr)
			},
		},
	}
	page := "http://" + numplan.LineGateway(uint8(s.node.Line)).String() + "/"
	handset := s.node.Handsets[1]
	var leaseErr error
	if handset.Line == 0 {
		leaseErr = handset.Lease(ctx)
	}
	book := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return handset.Host.Dial(ctx, network, addr)
			},
		},
	}
	bookURL := "http://" + numplan.LineGateway(uint8(handset.Line)).String() + "/phonebook/yealink.xml"
	get := func(ctx context.Context, c *http.Client, url, userAgent string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", userAgent)
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", url, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if shown := strings.Contains(string(body), lastName); err != nil || resp.StatusCode != http.StatusOK || !shown {
			return fmt.Errorf("%s: HTTP %d, %d bytes, peer %q shown: %v (%v)", url, resp.StatusCode, len(body), lastName, shown, err)
		}
		return nil
	}
	cli := func(cmd string) func(context.Context) error {
		return func(ctx context.Context) error {
			out, err := exec.CommandContext(ctx, peerlineBin, "-socket", sock, cmd, "--json").Output()
			if err != nil {
				return fmt.Errorf("peerline %s --json: %w", cmd, err)
			}
			var peers []control.Peer
			if cmd == "status" {
				var st control.Status
				err = json.Unmarshal(out, &st)
				peers = st.Peers
			} else {
				err = json.Unmarshal(out, &peers)
			}
			if err != nil || len(peers) != want {
				return fmt.Errorf("peerline %s --json: %d peers, want %d (%v)", cmd, len(peers), want, err)
			}
			return nil
		}
	}
	answers := []struct {
		name string
		get  func(context.Context) error
	}{
		{"peers_cli", cli("peers")},
		{"status_cli", cli("status")},
		{"status_api", func(ctx context.Context) error {
			var st control.Status
			if err := control.Call(ctx, sock, control.CmdStatus, nil, &st); err != nil {
				return fmt.Errorf("control status: %w", err)
			}
			if len(st.Peers) != want {
				return fmt.Errorf("control status: %d peers, want %d", len(st.Peers), want)
			}
			return nil
		}},
		{"status_page", func(ctx context.Context) error {
			return get(ctx, web, page, "Mozilla/5.0")
		}},
		{"phonebook", func(ctx context.Context) error {
			if leaseErr != nil {
				return fmt.Errorf("the handset got no line: %w", leaseErr)
			}
			return get(ctx, book, bookURL, "Yealink SIP-T19P 31.72.0.75 "+handset.MAC)
		}},
	}
	times := answerTimes{}
	var errs []error
	for _, a := range answers {
		var ms []float64
		for range scaleAnswerRounds {
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			start := time.Now()
			err := a.get(actx)
			d := time.Since(start)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", a.name, err))
				break
			}
			ms = append(ms, float64(d.Microseconds())/1000)
		}
		if len(ms) == scaleAnswerRounds {
			slices.Sort(ms)
			times[a.name] = []float64{round2(ms[len(ms)/2]), round2(ms[len(ms)-1])}
		}
	}
	return times, errors.Join(errs...)
}

// String is the bench line's form: name=p50/max ms, in a fixed order.
func (t answerTimes) String() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(t)) {
		fmt.Fprintf(&b, " %s=%.1f/%.1fms", k, t[k][0], t[k][1])
	}
	return strings.TrimSpace(b.String())
}
