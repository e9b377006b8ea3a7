//go:build linux && lab

package peerlab

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/peerline/peerline/pkg/lab"
)

// browser is a headless Chromium (Debian's chromium) running inside a lab
// host's namespace, as a laptop there would, driven from the test through
// the DevTools protocol over chromedp's pipe (file descriptors that nsenter
// passes on), so no debugging port is opened anywhere.
type browser struct {
	t    *testing.T
	name string
	ctx  context.Context
	// shots is where screenshots go (the test's artifact directory).
	shots string
	n     int
}

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("the console's browser test needs Chromium: apt-get install chromium")
	}
	t.Skip("the console's browser test needs Chromium: apt-get install chromium")
	return ""
}

// startBrowser starts Chromium in h; it ends with the test.
func startBrowser(t *testing.T, ctx context.Context, h *lab.Host, name string) *browser {
	t.Helper()
	bin := chromiumPath(t)
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(h.Lab().Dir(), name+"-chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		// Nothing but the console: no update checks, no sync, no
		// prefetching. The namespace has no way out of the lab anyway.
		chromedp.Flag("disable-component-update", true), chromedp.Flag("dns-prefetch-disable", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,AutofillServerCommunication"),
		chromedp.CombinedOutput(logf),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			cmd.Args = append([]string{"nsenter", "--net=" + h.NSPath(), "--"}, cmd.Args...)
			cmd.Path = nsenter
		}),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.WithoutCancel(ctx), opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	// The first Run starts the browser and must not carry a timeout. A
	// phone-sized window: the console is for the owner's smartphone too.
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(412, 900)); err != nil {
		t.Fatalf("starting chromium in %s: %v (log: %s)", h, err, logf.Name())
	}
	return &browser{t: t, name: name, ctx: bctx, shots: t.ArtifactDir()}
}

// do runs steps with a bound.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %s: %v", b.name, what, err)
	}
}

// get runs one action that returns a value, with a bound.
func get[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %s: %v", b.name, what, err)
	}
	return v
}

// open loads url and returns the page's text.
func (b *browser) open(url string) string {
	b.t.Helper()
	b.do("open "+url, chromedp.Navigate(url), chromedp.WaitReady("body"))
	return b.text()
}

// text returns the current page's text.
func (b *browser) text() string {
	b.t.Helper()
	return get(b, "read the page", chromedp.Text("body"))
}

// location returns the current URL.
func (b *browser) location() string {
	b.t.Helper()
	return get(b, "location", chromedp.Location())
}

// submit clicks sel and waits for the next page to load: a new document
// has a new performance.timeOrigin.
func (b *browser) submit(sel string) string {
	b.t.Helper()
	before := get(b, "before submit", chromedp.Evaluate[float64](`performance.timeOrigin`))
	b.do("click "+sel, chromedp.Click(sel, chromedp.NodeVisible))
	deadline := time.Now().Add(20 * time.Second)
	for {
		origin, err1 := chromedp.Run(b.ctx, chromedp.Evaluate[float64](`performance.timeOrigin`))
		state, err2 := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.readyState`))
		if err1 == nil && err2 == nil && origin != before && state == "complete" {
			break
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: clicking %s loaded no new page", b.name, sel)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return b.text()
}

// waitText waits until the page (which may refresh itself, or is
// reloaded when reload is set) shows one of want, or fails with what it
// showed.
func (b *browser) waitText(within time.Duration, reload bool, want ...string) string {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if reload {
			chromedp.Do(b.ctx, chromedp.Reload())
		}
		text, err := chromedp.Run(b.ctx, chromedp.Text("body"))
		if err == nil {
			for _, w := range want {
				if strings.Contains(text, w) {
					return text
				}
			}
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: the page did not show %q within %v; it shows:\n%s", b.name, want, within, text)
		}
		time.Sleep(time.Second)
	}
}

// shot saves a screenshot of the whole page as <browser>-<n>-<name>.png.
func (b *browser) shot(name string) string {
	b.t.Helper()
	// A page that refreshes itself can pull the document away from
	// under a capture; try again on the next one.
	var png []byte
	var err error
	for range 4 {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		b.t.Fatalf("%s: screenshot %s: %v", b.name, name, err)
	}
	b.n++
	path := filepath.Join(b.shots, fmt.Sprintf("%s-%02d-%s.png", b.name, b.n, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return path
}

// httpFrom is an HTTP client whose connections start inside h, with its
// own cookies: another device.
func httpFrom(h *lab.Host) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:     jar,
		Timeout: 4 * time.Second,
		Transport: &http.Transport{
			DialContext:       h.Dial,
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
