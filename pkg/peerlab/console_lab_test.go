//go:build linux && lab

package peerlab

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/peerline/peerline/pkg/adminpass"
	"github.com/peerline/peerline/pkg/bootconfig"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/trunkconfig"
)

// The console test's trunk: a registrar address on the lab's Internet
// segment where no host is, and an account number the page must not show.
const (
	deadRegistrar = "198.51.100.250"
	trunkAccount  = "4930123456"
)

// TestConsoleBrowser is the owner's story in a real browser: a laptop on
// Pi A's phone port sets the admin password and makes an invite; a laptop
// on Pi B's phone port logs in (B's password came from peerline.txt) and
// joins with the code; both consoles show the other peer online; A renames
// B, changes a setting, and B removes A. Screenshots of every page are
// kept in the test's artifact directory (go test -artifacts).
func TestConsoleBrowser(t *testing.T) {
	l := newLab(t)
	chromiumPath(t)
	natBins(t)
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	// Each Pi has a desk phone and a laptop on its phone port (a switch);
	// the laptop gets a line by DHCP like a phone, and its gateway is the
	// console's address.
	n, err := Build(ctx, l, Options{Peerlined: peerlinedBin, HandsetsA: []string{gxp1610, "laptop"}, HandsetsB: []string{t19p, "laptop"}, NAT: &NATOptions{
		A: lab.PortRestricted, B: lab.PortRestricted, Policy: lab.InputDrop, Rendezvousd: rendezvousdBin, Peerline: peerlineBin,
		noPairing: true,
		beforePairing: func(n *Network) error {
			// Each Pi's peerline.txt, for the settings page; the daemons
			// read it per request, so writing it now is in time.
			for _, node := range []*Node{n.A, n.B} {
				node.BootFile = filepath.Join(filepath.Dir(node.ConfigPath), "peerline.txt")
				if err := os.WriteFile(node.BootFile, []byte("# peerline.txt\nname = pi"+node.Name+"\nuplink_interface = wan\n"), 0o600); err != nil {
					return err
				}
			}
			return nil
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// A has a trunk whose registrar nobody answers (an unused address on
	// the lab's Internet segment, nothing leaves the lab): its status must
	// reach the console's Lines page, and its account must not. Line 1
	// is the first the handsets lease (any line works: the trunk waits
	// only for it to be up).
	n.A.Config.Trunks = []trunkconfig.Config{{Name: "provider", Registrar: deadRegistrar, User: trunkAccount, Password: "trunk-secret-pw",
		Lines: []int{1}, Prefix: "0"}}
	if err := n.A.writeConfig(); err != nil {
		t.Fatal(err)
	}
	// -boot-file takes effect at the next start.
	for _, node := range []*Node{n.A, n.B} {
		if err := node.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := node.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := node.WaitReady(ctx, daemonWait); err != nil {
			t.Fatal(err)
		}
		if err := node.Lease(ctx); err != nil {
			t.Fatal(err)
		}
	}
	laptopA, laptopB := n.A.Handsets[1], n.B.Handsets[1]
	consoleA := "http://" + numplan.LineGateway(uint8(laptopA.Line)).String()
	consoleB := "http://" + numplan.LineGateway(uint8(laptopB.Line)).String()
	homeA, err := n.NATA.AddHost("homeA", netip.MustParsePrefix("192.168.1.50/24"))
	if err != nil {
		t.Fatal(err)
	}
	homeB, err := n.NATB.AddHost("homeB", netip.MustParsePrefix("192.168.2.50/24"))
	if err != nil {
		t.Fatal(err)
	}

	// The home network reaches the console on the Pi's private uplink
	// address, but never its first-use page.
	t.Run("first-use page refused on the uplink", func(t *testing.T) {
		c := httpFrom(homeB)
		resp := mustGet(t, c, "http://192.168.2.2/", 200)
		if !strings.Contains(resp, "Manage this Pi") {
			t.Errorf("status page on the uplink lacks the console link:\n%s", resp)
		}
		if body := mustGet(t, c, "http://192.168.2.2/setup", http.StatusForbidden); !strings.Contains(body, "only from the phone port") {
			t.Errorf("/setup on the uplink: %s", body)
		}
	})

	// The home network finds the console by the Pi's name.
	t.Run("found by mDNS from the home network", func(t *testing.T) {
		addrs := resolveMDNS(t, homeA, "eth0", "pia.local.")
		if len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.168.1.2") {
			t.Fatalf("pia.local from A's home network = %v, want [192.168.1.2]", addrs)
		}
		c := httpFrom(homeA)
		req, _ := http.NewRequest("GET", "http://"+addrs[0].String()+"/", nil)
		req.Host = "pia.local"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("http://pia.local/ = %d", resp.StatusCode)
		}
	})

	// B's password comes from peerline.txt, as the boot service applies it.
	const pwA, pwB = "correct horse battery", "staple of the river"
	applyBootPassword(t, n.B, pwB)

	a := startBrowser(t, ctx, laptopA.Host, "A")
	b := startBrowser(t, ctx, laptopB.Host, "B")

	// A: the status page, then the first-use page.
	if text := a.open(consoleA + "/"); !strings.Contains(text, "no admin password yet") {
		t.Errorf("A's status page does not offer the first-use page:\n%s", text)
	}
	a.shot("status")
	a.open(consoleA + "/setup")
	a.do("type the password", chromedp.SendKeys("#password", pwA), chromedp.SendKeys("#again", pwA))
	a.shot("setup")
	if text := a.submit(`form[action="/setup"] button`); !strings.Contains(text, "Password set") {
		t.Fatalf("A: after setting the password:\n%s", text)
	}

	// A second device cannot take the node over once the password is set.
	t.Run("second device cannot take over", func(t *testing.T) {
		// The home network, and the desk phone's port (another device
		// on the phones' switch).
		for _, h := range []*lab.Host{homeA, n.A.PhoneHost} {
			c := httpFrom(h)
			base := "http://192.168.1.2"
			if h == n.A.PhoneHost {
				base = "http://" + numplan.LineGateway(uint8(n.A.Line)).String()
			}
			body := mustGet(t, c, base+"/setup", http.StatusForbidden)
			m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
			form := url.Values{"password": {"mallory wins now"}, "again": {"mallory wins now"}}
			if m != nil {
				form.Set("csrf", m[1])
			}
			resp, err := c.PostForm(base+"/setup", form)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: POST /setup = %d, want 403", h, resp.StatusCode)
			}
			if resp := mustGetResp(t, c, base+"/peers"); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("%s: /peers without a login = %d, want a redirect to /login", h, resp.StatusCode)
			}
		}
		enc, err := adminpass.Load(adminpass.Path(n.A.Config.StateDir))
		if ok, _ := adminpass.Verify(enc, pwA); err != nil || !ok {
			t.Errorf("A's password changed: %v", err)
		}
	})

	// A makes an invite.
	a.open(consoleA + "/invite")
	a.submit(`form[action="/invite"] button`)
	code := get(a, "read the code", chromedp.Value("#code"))
	qr := get(a, "read the QR code", chromedp.AttributeValue(`img[alt="QR code of the invite"]`, "src")).Value
	if code == "" || !strings.HasPrefix(qr, "data:image/png;base64,") {
		t.Fatalf("A's invite page: code %q, QR %.40q", code, qr)
	}
	a.shot("invite")
	t.Logf("invite code: %s", code)

	// A second invite, revoked on A's page before anyone uses it.
	a.open(consoleA + "/invite")
	a.submit(`form[action="/invite"] button`)
	revoked := get(a, "read the second code", chromedp.Value("#code"))
	revokedID := get(a, "read its ID", chromedp.Text("#invite-id"))
	if text := a.submit(`form[action="/invite/revoke"] input[value="` + revokedID + `"] ~ button`); !strings.Contains(text, "Invite revoked") {
		t.Errorf("A: revoking an invite:\n%s", text)
	}

	// B logs in with the password from peerline.txt and joins.
	if text := b.open(consoleB + "/join"); !strings.Contains(text, "Admin password") {
		t.Fatalf("B: /join without a login did not ask for the password:\n%s", text)
	}
	b.do("type B's password", chromedp.SendKeys("#password", pwB))
	b.shot("login")
	b.submit(`form[action="/login"] button`)
	if loc := b.location(); !strings.HasSuffix(loc, "/join") {
		t.Fatalf("B: after logging in at %s, want /join", loc)
	}
	// A mistyped code is caught before anything is changed.
	typo := []byte(code)
	typo[8] = map[bool]byte{true: 'A', false: 'B'}[typo[8] != 'A']
	b.do("paste a mistyped code", chromedp.SendKeys("#code", string(typo)))
	if text := b.submit(`form[action="/join"] button`); !strings.Contains(text, "typo") {
		t.Errorf("B: a mistyped code was not reported as a typo:\n%s", text)
	}
	if v := get(b, "the typed code", chromedp.Evaluate[string](`document.getElementById("code").value`)); v != string(typo) {
		t.Errorf("B: the refused code was not kept for correcting: %q", v)
	}
	// The revoked code fails at the server, and says so.
	b.open(consoleB + "/join")
	b.do("paste the revoked code", chromedp.SendKeys("#code", revoked))
	b.submit(`form[action="/join"] button`)
	if text := b.waitText(45*time.Second, false, "failed"); !strings.Contains(text, "revoked") || !strings.Contains(text, "Try again") {
		t.Errorf("B: joining with a revoked code:\n%s", text)
	}
	b.shot("join-revoked")
	b.open(consoleB + "/join")
	b.do("paste the code", chromedp.SendKeys("#code", code))
	joinStart := time.Now()
	b.submit(`form[action="/join"] button`)
	b.shot("joining")
	text := b.waitText(90*time.Second, false, "is online", "failed")
	t.Logf("join: from clicking Join to the page saying online: %v (the page refreshes every second)", time.Since(joinStart).Round(100*time.Millisecond))
	b.shot("joined")
	if !strings.Contains(text, "is online") {
		t.Fatalf("B: join failed:\n%s", text)
	}
	for _, s := range []string{"Code checked: done", "Rendezvous server contacted: done", "Friend's Pi answered: done", "Tunnel up: done", "Path chosen: done"} {
		if !strings.Contains(text, s) {
			t.Errorf("B: join progress lacks %q:\n%s", s, text)
		}
	}

	// Both consoles show the other online.
	a.open(consoleA + "/peers")
	textA := a.waitText(30*time.Second, true, "online")
	a.shot("peers")
	b.open(consoleB + "/peers")
	textB := b.waitText(30*time.Second, true, "online")
	b.shot("peers")
	if !strings.Contains(textA, "piB") || strings.Contains(textA, "offline") {
		t.Errorf("A's peers page:\n%s", textA)
	}
	if !strings.Contains(textB, "online") || strings.Contains(textB, "offline") {
		t.Errorf("B's peers page:\n%s", textB)
	}
	// What each tunnel's rewriter dropped, by reason (issue 15.6):
	// nothing yet, or "inbound sip_flood 3, ...".
	if !regexp.MustCompile(`Dropped\s+(nothing|(in|out)bound [a-z_]+ \d+)`).MatchString(textA) {
		t.Errorf("A's peers page does not show the rewriter's drops:\n%s", textA)
	}
	indexOfB := peerIndex(t, textA)
	indexOfA := peerIndex(t, textB)

	// A call from A's phone to B's shows on A's calls page, live, with its
	// quality.
	pa, pb, err := n.StartPhones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type callDone struct {
		r   *CallResult
		err error
	}
	done := make(chan callDone, 1)
	go func() {
		r, err := Call(ctx, pa, pb, "sip:b@10."+indexOfB+"."+strconv.Itoa(n.B.Line)+".1", 20*time.Second)
		done <- callDone{r, err}
	}()
	a.open(consoleA + "/calls")
	a.waitText(25*time.Second, false, "live")
	time.Sleep(6 * time.Second)
	text = a.open(consoleA + "/calls")
	a.shot("calls-live")
	if !regexp.MustCompile(`Received\s+\d+\s+[\d.]+ %\s+[\d.]+ ms\s+[1-4]\.\d`).MatchString(text) {
		t.Errorf("A's calls page shows no received packets, loss, jitter and MOS for the live call:\n%s", text)
	}
	cd := <-done
	requireCall(t, cd.r, cd.err, "sip:a@10."+indexOfA+"."+strconv.Itoa(n.A.Line)+".1")

	// A paired peer gets nothing from the console through the tunnel,
	// although the tunnel carries ping.
	t.Run("paired peer gets nothing", func(t *testing.T) {
		line := strconv.Itoa(n.A.Line)
		gw := "10." + indexOfA + "." + line + ".2"
		if out, err := n.B.PhoneHost.Run(ctx, "ping", "-c", "1", "-W", "3", "10."+indexOfA+"."+line+".1"); err != nil {
			t.Fatalf("B's phone cannot ping A's phone through the tunnel (the check below would prove nothing): %v %s", err, out)
		}
		c := httpFrom(n.B.PhoneHost)
		if resp, err := c.Get("http://" + gw + "/"); err == nil {
			resp.Body.Close()
			t.Errorf("B's phone got HTTP %d from A's console through the tunnel (%s)", resp.StatusCode, gw)
		}
	})

	// A renames B: markup is refused and shown as text, a plain name is
	// taken.
	a.open(consoleA + "/peers")
	if text := a.submit(`form[action="/peers/ping"] button`); !regexp.MustCompile(`Peer \d+ answered in [\d.]+ ms over the (direct|relay) path`).MatchString(text) {
		t.Errorf("A: ping:\n%s", text)
	}
	sel := `#name` + indexOfB
	a.do("clear the name", chromedp.Clear(sel), chromedp.SendKeys(sel, "<b>Bob</b>"))
	text = a.submit(`form[action="/peers/rename"] button`)
	if !strings.Contains(text, "Not renamed") || !strings.Contains(text, `"<b>Bob</b>"`) {
		t.Errorf("A: rename to markup:\n%s", text)
	}
	a.do("clear the name", chromedp.Clear(sel), chromedp.SendKeys(sel, "Bob's Pi"))
	text = a.submit(`form[action="/peers/rename"] button`)
	if !strings.Contains(text, "is now called Bob's Pi") {
		t.Errorf("A: rename:\n%s", text)
	}
	a.shot("renamed")
	// A new name is no new tunnel: the peer stays online.
	if text := a.waitText(10*time.Second, true, "online", "offline"); strings.Contains(text, "offline") {
		t.Errorf("A: the peer went offline after the rename:\n%s", text)
	}
	if out, err := n.A.Host.Run(ctx, peerlineBin, "-socket", filepath.Join(n.A.Config.RunDir, "control.sock"), "peers"); err != nil || !strings.Contains(out, "Bob's Pi") {
		t.Errorf("peerline peers on A after the rename: %v\n%s", err, out)
	}

	// The other pages render, and the settings go through peerline.txt.
	a.open(consoleA + "/phones")
	lsel := "#label" + strconv.Itoa(n.A.Line)
	a.do("label the phone's line", chromedp.SendKeys(lsel, "Kitchen desk"))
	if text := a.submit(lsel + ` ~ button`); !strings.Contains(text, "Line "+strconv.Itoa(n.A.Line)+" · Kitchen desk") || !strings.Contains(text, "GXP1610") {
		t.Errorf("A: phones page after labelling:\n%s", text)
	}
	a.shot("phones")
	a.open(consoleA + "/lines")
	text = a.waitText(40*time.Second, true, "failed: no answer from "+deadRegistrar)
	if !strings.Contains(text, "Outside lines") || !strings.Contains(text, "provider") {
		t.Errorf("A: the Lines page does not list the trunk:\n%s", text)
	}
	for _, secret := range []string{trunkAccount, "trunk-secret-pw"} {
		if strings.Contains(text, secret) {
			t.Errorf("A: the Lines page shows the trunk's account or password (%q)", secret)
		}
	}
	a.shot("lines-trunk")
	a.open(consoleA + "/logs")
	a.shot("logs")
	checkDiagnostics(t, laptopA.Host, consoleA, pwA, n.A.BootFile)
	a.open(consoleA + "/settings")
	a.do("bad zone", chromedp.Clear("#time_zone"), chromedp.SendKeys("#time_zone", "Mars/Base"))
	if text := a.submit(`form[action="/settings"] button`); !strings.Contains(text, `"Mars/Base" is not in the tz database`) {
		t.Errorf("A: a bad time zone was not refused with the boot config's message:\n%s", text)
	}
	a.shot("settings-error")
	a.do("good zone", chromedp.Clear("#time_zone"), chromedp.SendKeys("#time_zone", "Europe/Berlin"))
	if text := a.submit(`form[action="/settings"] button`); !strings.Contains(text, "Settings saved") {
		t.Errorf("A: settings not saved:\n%s", text)
	}
	a.shot("settings")
	if b, err := os.ReadFile(n.A.BootFile); err != nil || !strings.Contains(string(b), "time_zone = Europe/Berlin") || !strings.Contains(string(b), "# peerline.txt") {
		t.Errorf("A's peerline.txt after the settings: %v\n%s", err, b)
	}

	// B removes A, after confirming.
	b.open(consoleB + "/peers")
	b.submit(`a[href="/peers/remove?peer=` + indexOfA + `"]`)
	b.shot("remove-confirm")
	if text := b.submit(`form[action="/peers/remove"] button.danger`); !strings.Contains(text, "removed") || !strings.Contains(text, "No peers yet") {
		t.Errorf("B: after removing A:\n%s", text)
	}
	b.shot("removed")
	a.shot("end")
	copyDocsShots(t, a.shots)
}

// applyBootPassword writes admin_password into node's peerline.txt and
// applies it as peerline-boot.service does, then checks it left the file.
func applyBootPassword(t *testing.T, node *Node, pw string) {
	t.Helper()
	old, err := os.ReadFile(node.BootFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(node.BootFile, append(old, []byte("admin_password = "+pw+"\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	err = bootconfig.Apply(bootconfig.ApplyOptions{
		BootFile: node.BootFile, ConfigPath: node.ConfigPath, StateDir: node.Config.StateDir, RunDir: node.Config.RunDir,
		NetworkDir: filepath.Join(dir, "network"), WPAFile: filepath.Join(dir, "wpa.conf"), ErrorFile: filepath.Join(dir, "error"),
		PhonePort: node.Config.PhonePort,
	})
	if err != nil {
		t.Fatalf("applying B's peerline.txt: %v", err)
	}
	if b, _ := os.ReadFile(node.BootFile); strings.Contains(string(b), pw) {
		t.Fatalf("the password is still in peerline.txt:\n%s", b)
	}
}

var peerHeadRE = regexp.MustCompile(`peer (\d+) · dial`)

func peerIndex(t *testing.T, text string) string {
	t.Helper()
	m := peerHeadRE.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no peer on the page:\n%s", text)
	}
	return m[1]
}

func mustGetResp(t *testing.T, c *http.Client, u string) *http.Response {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	resp.Body.Close()
	return resp
}

func mustGet(t *testing.T, c *http.Client, u string, want int) string {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		t.Errorf("GET %s = %d, want %d:\n%s", u, resp.StatusCode, want, b)
	}
	return string(b)
}

// docsShots are the screenshots the README shows.
var docsShots = []string{"A-01-status", "A-02-setup", "A-03-invite", "B-04-joined", "A-04-peers", "A-05-calls-live", "A-10-settings-error"}

// copyDocsShots copies the README's screenshots into the directory
// PEERLINE_DOCS_SHOTS names (docs/console): how they are made.
func copyDocsShots(t *testing.T, dir string) {
	dst := os.Getenv("PEERLINE_DOCS_SHOTS")
	if dst == "" {
		return
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Error(err)
		return
	}
	for _, name := range docsShots {
		b, err := os.ReadFile(filepath.Join(dir, name+".png"))
		if err == nil {
			err = os.WriteFile(filepath.Join(dst, name+".png"), b, 0o644)
		}
		if err != nil {
			t.Error(errors.Join(errors.New("copying screenshots"), err))
		}
	}
}

// TestConsoleNotOnPublicUplink: a Pi whose uplink has a public address
// serves no console there (only with "console": {"public_uplink": true}),
// and a paired peer's phone cannot reach the console through the tunnel;
// the phone port still gets it.
func TestConsoleNotOnPublicUplink(t *testing.T) {
	ctx, n := newNetwork(t, 2*time.Minute)
	phone := httpFrom(n.A.PhoneHost)
	if body := mustGet(t, phone, "http://10.0.1.2/", 200); !strings.Contains(body, "Manage this Pi") {
		t.Fatalf("A's phone port does not serve the console:\n%s", body)
	}
	// Give the uplink watcher a few rounds to (wrongly) open a listener.
	time.Sleep(6 * time.Second)
	for _, tc := range []struct {
		from *lab.Host
		url  string
	}{
		{n.B.Host, "http://" + n.A.WAN.String() + "/"},
		{n.B.Host, "http://" + n.A.WAN.String() + "/setup"},
		{n.B.Host, "http://" + n.A.WAN.String() + "/metrics"},
		{n.B.PhoneHost, "http://" + n.B.AddrOf(n.A).Next().String() + "/"},
		{n.B.PhoneHost, "http://" + n.B.AddrOf(n.A).Next().String() + "/metrics"},
	} {
		c := httpFrom(tc.from)
		if resp, err := c.Get(tc.url); err == nil {
			resp.Body.Close()
			t.Errorf("%s got HTTP %d from %s", tc.from, resp.StatusCode, tc.url)
		}
	}
	// The tunnel itself works, so the refusals above are the console's
	// and the firewall's doing.
	if out, err := n.B.PhoneHost.Run(ctx, "ping", "-c", "1", "-W", "3", n.B.AddrOf(n.A).String()); err != nil {
		t.Errorf("B's phone cannot ping A's phone: %v %s", err, out)
	}
	// With the setting, the public address serves it (so the check above
	// can fail), and the first-use page stays refused there.
	n.A.Config.Console.PublicUplink = true
	if err := n.A.writeConfig(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(n.A.Daemon.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c := httpFrom(n.B.Host)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := c.Get("http://" + n.A.WAN.String() + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with public_uplink the console is not served on %s: %v", n.A.WAN, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	mustGet(t, c, "http://"+n.A.WAN.String()+"/setup", http.StatusForbidden)
}

// resolveMDNS asks for name's A records on ifname's link from h, as a
// one-shot (legacy unicast) mDNS query, and returns the answers.
func resolveMDNS(t *testing.T, h *lab.Host, ifname, name string) []netip.Addr {
	t.Helper()
	pc, err := lab.In(h, func() (*net.UDPConn, error) { return net.ListenUDP("udp4", &net.UDPAddr{}) })
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ifi, err := lab.In(h, func() (*net.Interface, error) { return net.InterfaceByName(ifname) })
	if err != nil {
		t.Fatal(err)
	}
	if err := ipv4.NewPacketConn(pc).SetMulticastInterface(ifi); err != nil {
		t.Fatal(err)
	}
	m := &dns.Msg{Question: []dns.Question{{Name: name, Qtype: dns.TypeA, Qclass: dns.ClassINET}}}
	m.Id = 0x4242
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	buf := make([]byte, 9000)
	// A few tries: the responder may still be opening its socket.
	for try := 0; try < 5 && len(out) == 0; try++ {
		if _, err := pc.WriteToUDPAddrPort(b, netip.MustParseAddrPort("224.0.0.251:5353")); err != nil {
			t.Fatal(err)
		}
		pc.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, _, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			var r dns.Msg
			if r.Unpack(buf[:n]) != nil {
				continue
			}
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok {
					if ip, ok := netip.AddrFromSlice(a.A); ok {
						out = append(out, ip.Unmap())
					}
				}
			}
		}
	}
	return out
}

// TestConsoleBootJoin: `join = CODE` in B's peerline.txt, applied by the
// boot step before B starts, pairs B with A once; B's status page and
// status.json report the steps and the result, and the code is gone from
// the card.
func TestConsoleBootJoin(t *testing.T) {
	l := newLab(t)
	natBins(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	n, err := Build(ctx, l, Options{Peerlined: peerlinedBin, NAT: &NATOptions{
		A: lab.PortRestricted, B: lab.PortRestricted, Policy: lab.InputDrop, Rendezvousd: rendezvousdBin, Peerline: peerlineBin,
		noPairing: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	n.A.waitRegistered(ctx, registerWait)
	var inv control.InviteResult
	if err := n.A.cli(ctx, &inv, "invite", "--json", "--ttl", "10m"); err != nil {
		t.Fatal(err)
	}
	// B is switched off, its card gets the code, and it starts again.
	if err := n.B.Stop(); err != nil {
		t.Fatal(err)
	}
	n.B.BootFile = filepath.Join(filepath.Dir(n.B.ConfigPath), "peerline.txt")
	if err := os.WriteFile(n.B.BootFile, []byte("name = piB\nuplink_interface = wan\njoin = "+inv.Code+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := bootconfig.Apply(bootconfig.ApplyOptions{
		BootFile: n.B.BootFile, ConfigPath: n.B.ConfigPath, StateDir: n.B.Config.StateDir, RunDir: n.B.Config.RunDir,
		NetworkDir: filepath.Join(dir, "network"), WPAFile: filepath.Join(dir, "wpa.conf"), ErrorFile: filepath.Join(dir, "error"),
		PhonePort: n.B.Config.PhonePort,
	}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(n.B.BootFile); strings.Contains(string(b), inv.Code) {
		t.Fatalf("the code is still on the card:\n%s", b)
	}
	if err := n.B.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c := httpFrom(n.B.PhoneHost)
	deadline := time.Now().Add(90 * time.Second)
	var st struct {
		BootJoin *control.JoinProgress `json:"boot_join"`
		Peers    []control.Peer        `json:"peers"`
	}
	for {
		resp, err := c.Get("http://10.0.1.2/status.json")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if err == nil && st.BootJoin != nil && st.BootJoin.Done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's status shows no finished boot join after 90 s: %+v (err %v); see %s", st.BootJoin, err, n.B.daemonLog())
		}
		time.Sleep(time.Second)
	}
	if st.BootJoin.Error != "" || st.BootJoin.Peer == nil || len(st.Peers) != 1 || !st.Peers[0].Online {
		t.Fatalf("boot join: %+v, peers %+v", st.BootJoin, st.Peers)
	}
	page := mustGet(t, c, "http://10.0.1.2/", 200)
	if !strings.Contains(page, "Join from peerline.txt") || !strings.Contains(page, "Paired with piA") {
		t.Errorf("B's status page does not report the boot join:\n%s", page)
	}
	// Applied once: a restart does not join again.
	if _, err := os.Stat(filepath.Join(n.B.Config.StateDir, bootconfig.JoinFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the join code is still waiting in the state directory: %v", err)
	}
}

// checkDiagnostics logs in from h as another browser would and downloads
// the diagnostics bundle: it holds the status and the counters, and
// peerline.txt without its secrets.
func checkDiagnostics(t *testing.T, h *lab.Host, console, pw, bootFile string) {
	t.Helper()
	// A secret on the card, to see it removed from the bundle.
	old, err := os.ReadFile(bootFile)
	if err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(bootFile, old, 0o600)
	if err := os.WriteFile(bootFile, append(old, []byte("wifi_password = hunter2hunter2\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	c := httpFrom(h)
	csrfOf := func(path string) string {
		body := mustGet(t, c, console+path, 200)
		m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no CSRF token on %s", path)
		}
		return m[1]
	}
	resp, err := c.PostForm(console+"/login", url.Values{"csrf": {csrfOf("/login")}, "password": {pw}, "next": {"/logs"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login from a second browser = %d", resp.StatusCode)
	}
	resp, err = c.PostForm(console+"/diagnostics", url.Values{"csrf": {csrfOf("/logs")}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/gzip" {
		t.Fatalf("diagnostics = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	gz, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string]string{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[strings.TrimPrefix(hdr.Name, "peerline-diagnostics/")] = string(b)
	}
	for _, f := range []string{"status.json", "logs.json", "counters.json", "peerlined.json", "supervisor-status.json", "peerline.txt", "version.txt"} {
		if _, ok := files[f]; !ok {
			t.Errorf("diagnostics bundle lacks %s (has %d files)", f, len(files))
		}
	}
	if txt := files["peerline.txt"]; strings.Contains(txt, "hunter2") || !strings.Contains(txt, "wifi_password = <removed>") {
		t.Errorf("peerline.txt in the bundle:\n%s", txt)
	}
	for name, body := range files {
		if strings.Contains(body, "hunter2") || strings.Contains(body, "PRIVATE") {
			t.Errorf("%s in the bundle holds a secret", name)
		}
	}
}
