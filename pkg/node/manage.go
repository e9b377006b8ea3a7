package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/peerline/peerline/pkg/adminpass"
	"github.com/peerline/peerline/pkg/atomicfile"
	"github.com/peerline/peerline/pkg/bootconfig"
	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/pairing"
	"github.com/peerline/peerline/pkg/wpactl"
)

// This file holds what the web console and `peerline` change on the node
// besides pairing: peer names, line labels, settings (through
// peerline.txt), joins that report their progress, and the diagnostics.

// Join stages: pairing.Join reports the first three through its context,
// runJoin the last two.
const (
	stageChecked = pairing.StageChecked
	stageServer  = pairing.StageServer
	stageWaiting = pairing.StageWaiting
	stageTunnel  = pairing.StageWaiting + 1
	stagePath    = stageTunnel + 1
)

var stageNames = []string{"Code checked", "Rendezvous server contacted", "Friend's Pi answered", "Tunnel up", "Path chosen"}

// onlineWait bounds how long a join waits, once paired, for the tunnel to
// carry a handshake.
const onlineWait = 60 * time.Second

// maxJoins bounds the joins kept for their progress pages.
const maxJoins = 16

// joins are the joins started by CmdJoinStart; mu guards both fields and
// every job's progress.
type joins struct {
	mu    sync.Mutex
	jobs  map[string]*control.JoinProgress
	order []string
}

func (j *joins) get(id string) (control.JoinProgress, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	p, ok := j.jobs[id]
	if !ok {
		return control.JoinProgress{}, false
	}
	c := *p
	c.Steps = slices.Clone(p.Steps)
	return c, true
}

func (j *joins) update(id string, fn func(p *control.JoinProgress)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if p, ok := j.jobs[id]; ok {
		fn(p)
	}
}

// startJoin pairs with code in the background and returns at once.
func (nd *node) startJoin(code string, fromBoot bool) control.JoinProgress {
	b := make([]byte, 8)
	rand.Read(b)
	id := hex.EncodeToString(b)
	p := &control.JoinProgress{ID: id, Started: time.Now().UTC(), FromBootConfig: fromBoot}
	for i, n := range stageNames {
		st := control.StepPending
		if i == 0 {
			st = control.StepActive
		}
		p.Steps = append(p.Steps, control.JoinStep{Name: n, State: st})
	}
	j := &nd.joins
	j.mu.Lock()
	if j.jobs == nil {
		j.jobs = map[string]*control.JoinProgress{}
	}
	if len(j.order) >= maxJoins {
		delete(j.jobs, j.order[0])
		j.order = j.order[1:]
	}
	j.jobs[id] = p
	j.order = append(j.order, id)
	out := *p
	out.Steps = slices.Clone(p.Steps)
	j.mu.Unlock()
	go nd.runJoin(id, code)
	return out
}

// reach marks stage done (with detail) and the next one active.
func reach(p *control.JoinProgress, stage int, detail string) {
	for i := range p.Steps {
		switch {
		case i < stage && p.Steps[i].State != control.StepDone:
			p.Steps[i].State = control.StepDone
		case i == stage:
			p.Steps[i].State = control.StepDone
			if detail != "" {
				p.Steps[i].Detail = detail
			}
		case i == stage+1:
			p.Steps[i].State = control.StepActive
		}
	}
}

func fail(p *control.JoinProgress, err string) {
	for i := range p.Steps {
		if p.Steps[i].State == control.StepActive {
			p.Steps[i].State = control.StepFailed
		}
	}
	p.Done, p.Error = true, err
}

func (nd *node) runJoin(id, code string) {
	ctx := nd.runCtx
	log := nd.log.With("join", id)
	ctx = pairing.WithStages(ctx, func(stage int, detail string) {
		nd.joins.update(id, func(p *control.JoinProgress) { reach(p, stage, detail) })
	})
	ref, err := nd.pair.Join(ctx, code)
	if err != nil {
		log.Warn("join failed", "err", err)
		nd.joins.update(id, func(p *control.JoinProgress) { fail(p, err.Error()) })
		nd.saveBootJoin(id)
		return
	}
	nd.joins.update(id, func(p *control.JoinProgress) {
		reach(p, stageWaiting, fmt.Sprintf("paired: peer %d (%s)", ref.Index, pairing.DisplayName(ref.Name)))
		p.Peer = &ref
	})
	deadline := time.Now().Add(onlineWait)
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := nd.status(ctx)
		if err == nil {
			for _, pe := range st.Peers {
				if pe.Index != ref.Index {
					continue
				}
				if pe.Up && pe.LastHandshake != nil {
					nd.joins.update(id, func(p *control.JoinProgress) { reach(p, stageTunnel, "WireGuard handshake done") })
				}
				// Done once the path manager has chosen a path, so the
				// page can say which and why.
				if pe.Online && pe.Path != "" {
					path := pe.Path
					if pe.PathReason != "" {
						path += ": " + pe.PathReason
					}
					nd.joins.update(id, func(p *control.JoinProgress) {
						reach(p, stageTunnel, "WireGuard handshake done")
						reach(p, stagePath, path)
						p.Done = true
					})
					log.Info("joined; peer online", "peer", ref.Index, "path", path)
					nd.saveBootJoin(id)
					return
				}
			}
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("paired with %s as peer %d, but the tunnel did not come up within %v. Both Pis keep trying; check that both are online and share a rendezvous server (the Peers page says why a peer is offline)", pairing.DisplayName(ref.Name), ref.Index, onlineWait)
			nd.joins.update(id, func(p *control.JoinProgress) { fail(p, msg) })
			nd.saveBootJoin(id)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// bootJoinResultFile keeps the outcome of peerline.txt's join across
// restarts, for the status page.
const bootJoinResultFile = "boot-join.result"

func (nd *node) saveBootJoin(id string) {
	p, ok := nd.joins.get(id)
	if !ok || !p.FromBootConfig {
		return
	}
	b, _ := json.Marshal(p)
	if err := atomicfile.WriteFile(filepath.Join(nd.cfg.Load().StateDir, bootJoinResultFile), b, 0o600); err != nil {
		nd.log.Warn("saving the boot join's result", "err", err)
	}
}

// bootJoin returns the progress of peerline.txt's join, if there was one.
func (nd *node) bootJoin() *control.JoinProgress {
	nd.joins.mu.Lock()
	id := nd.bootJoinID
	nd.joins.mu.Unlock()
	if id != "" {
		if p, ok := nd.joins.get(id); ok {
			return &p
		}
	}
	b, err := os.ReadFile(filepath.Join(nd.cfg.Load().StateDir, bootJoinResultFile))
	if err != nil {
		return nil
	}
	var p control.JoinProgress
	if json.Unmarshal(b, &p) != nil {
		return nil
	}
	return &p
}

// runBootJoin uses the code `join =` left in the state directory, once:
// the file is removed before the join starts. It waits for the node to be
// ready (registered with its servers), since a join right at start would
// find no server yet.
func (nd *node) runBootJoin(ctx context.Context) error {
	path := filepath.Join(nd.cfg.Load().StateDir, bootconfig.JoinFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	code := strings.TrimSpace(string(b))
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing the used join code: %w", err)
	}
	for ctx.Err() == nil {
		if st, err := nd.status(ctx); err == nil && st.Ready {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	nd.log.Info("joining with the code from peerline.txt")
	p := nd.startJoin(code, true)
	nd.joins.mu.Lock()
	nd.bootJoinID = p.ID
	nd.joins.mu.Unlock()
	return nil
}

// rename gives a peer the owner's name for it.
func (nd *node) rename(a control.RenameArgs) (control.PeerRef, error) {
	name := strings.TrimSpace(a.Name)
	if name == "" {
		return control.PeerRef{}, errors.New("the new name is empty: type a name")
	}
	if err := bootconfig.CheckName(name); err != nil {
		return control.PeerRef{}, fmt.Errorf("name %v: use up to 63 letters, digits, spaces and - _ . '", err)
	}
	var ref control.PeerRef
	err := nd.pair.Edit(func(c *config.Config) error {
		p, err := pairing.FindPeer(c, a.Peer)
		if err != nil {
			return err
		}
		for i := range c.Peers {
			if c.Peers[i].Index == p.Index {
				c.Peers[i].Name, c.Peers[i].Renamed = name, true
			}
		}
		ref = control.PeerRef{Index: p.Index, Name: name}
		return nil
	})
	if err == nil {
		nd.log.Info("peer renamed", "peer", ref.Index, "name", name)
	}
	return ref, err
}

// labelLine names a local line ("" removes the label).
func (nd *node) labelLine(a control.LabelLineArgs) error {
	label := strings.TrimSpace(a.Label)
	if err := bootconfig.CheckName(label); err != nil {
		return fmt.Errorf("label %v: use up to 63 letters, digits, spaces and - _ . '", err)
	}
	if !slices.Contains(nd.localLines(), a.Line) {
		return fmt.Errorf("line %d is not in use on this Pi; the Phones page lists the lines", a.Line)
	}
	err := nd.pair.Edit(func(c *config.Config) error {
		if label == "" {
			if _, ok := c.LineLabels[a.Line]; !ok {
				return pairing.ErrNoChange
			}
			delete(c.LineLabels, a.Line)
			return nil
		}
		if c.LineLabels == nil {
			c.LineLabels = map[int]string{}
		}
		c.LineLabels[a.Line] = label
		return nil
	})
	if errors.Is(err, pairing.ErrNoChange) {
		err = nil
	}
	if err == nil {
		nd.log.Info("line labelled", "line", a.Line, "label", label)
	}
	return err
}

func (nd *node) logs() []control.LogLine {
	lines := nd.ring.Lines()
	out := make([]control.LogLine, 0, len(lines))
	for _, l := range lines {
		out = append(out, control.LogLine{Time: l.Time, Level: l.Level.String(), Text: l.Text})
	}
	return out
}

// wifiFile is where Update writes wpa_supplicant's file: the run
// directory, as peerline-boot.service does on the image.
func wifiFile(cfg *config.Config) string {
	return filepath.Join(cfg.RunDir, filepath.Base(bootconfig.DefaultWPAFile))
}

func (nd *node) settings() control.Settings {
	cfg := nd.cfg.Load()
	s := control.Settings{Name: cfg.Name, TimeZone: cfg.Phones.TimeZone, Rendezvous: []string{}, Uplink: bootconfig.DefaultUplink}
	for _, r := range cfg.Rendezvous {
		s.Rendezvous = append(s.Rendezvous, r.String())
	}
	f, err := bootconfig.Read(nd.bootFile)
	if err != nil {
		s.Problem = err.Error()
	} else {
		if f.WiFi != nil {
			s.WiFiSSID, s.WiFiCountry, s.WiFiPasswordSet = f.WiFi.SSID, f.WiFi.Country, f.WiFi.Password != ""
		}
		s.Uplink = f.Uplink.Interface
	}
	s.Writable = writable(nd.bootFile)
	if !s.Writable && s.Problem == "" {
		s.Problem = nd.bootFile + " cannot be written (the boot partition is read-only or missing), so settings can only be changed by editing it on a PC"
	}
	return s
}

func writable(path string) bool {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		f.Close()
		return true
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	fi, err := os.Stat(filepath.Dir(path))
	return err == nil && fi.IsDir()
}

// setSettings writes the settings into peerline.txt through
// bootconfig.Update (the same checks and messages as at boot) and hands
// the daemon the new config, under the config edit lock.
func (nd *node) setSettings(a control.SettingsArgs) (control.Settings, error) {
	set := map[string]string{
		"name":         strings.TrimSpace(a.Name),
		"time_zone":    strings.TrimSpace(a.TimeZone),
		"wifi_ssid":    a.WiFiSSID,
		"wifi_country": strings.TrimSpace(a.WiFiCountry),
	}
	var rv []string
	for _, r := range a.Rendezvous {
		if r = strings.TrimSpace(r); r != "" {
			rv = append(rv, r)
		}
	}
	set["rendezvous"] = strings.Join(rv, ", ")
	if a.WiFiPassword != "" {
		set["wifi_password"] = a.WiFiPassword
	}
	if a.WiFiSSID == "" {
		set["wifi_password"], set["wifi_country"] = "", ""
	}
	for k, v := range set {
		if strings.ContainsAny(v, "\r\n") {
			return control.Settings{}, fmt.Errorf("%s: a setting is one line; remove the line break", k)
		}
	}
	cfg := nd.cfg.Load()
	var oldWiFi *bootconfig.WiFi
	if f, err := bootconfig.Read(nd.bootFile); err == nil {
		oldWiFi = f.WiFi
	}
	var checked *config.Config
	err := nd.pair.EditFile(func(path string) (*config.Config, error) {
		err := bootconfig.Update(bootconfig.ApplyOptions{
			BootFile: nd.bootFile, ConfigPath: path, StateDir: cfg.StateDir, RunDir: cfg.RunDir,
			PhonePort: cfg.PhonePort, WPAFile: wifiFile(cfg), ErrorFile: nd.bootErrorFile,
		}, set)
		if err != nil {
			return nil, err
		}
		if checked, err = config.Load(path); err != nil {
			return nil, err
		}
		os.Remove(nd.bootErrorFile)
		return checked, nil
	})
	if errors.Is(err, pairing.ErrNotTaken) {
		return control.Settings{}, errors.New("the settings were saved but the daemon did not take them; restart the Pi")
	}
	if err != nil {
		return control.Settings{}, err
	}
	nd.log.Info("settings changed", "name", checked.Name, "time_zone", checked.Phones.TimeZone, "rendezvous", len(checked.Rendezvous), "wifi_ssid_set", a.WiFiSSID != "", "wifi_password_changed", a.WiFiPassword != "")
	out := nd.settings()
	out.Note = nd.applyWiFi(oldWiFi)
	return out, nil
}

// applyWiFi asks wpa_supplicant to re-read the Wi-Fi file if the Wi-Fi
// settings changed, and says what happened.
func (nd *node) applyWiFi(old *bootconfig.WiFi) string {
	f, err := bootconfig.Read(nd.bootFile)
	if err != nil || f.WiFi == nil || old != nil && *old == *f.WiFi {
		return ""
	}
	ctx, cancel := context.WithTimeout(nd.runCtx, 5*time.Second)
	defer cancel()
	switch err := wpactl.Reconfigure(ctx, wpactl.DefaultDir, f.Uplink.Interface, nd.cfg.Load().RunDir); {
	case err == nil:
		nd.log.Info("Wi-Fi settings handed to wpa_supplicant")
		return "The Wi-Fi uses the new settings now; if this page was opened over the Wi-Fi, reconnect to the new network."
	case errors.Is(err, wpactl.ErrNotRunning):
		return "The new Wi-Fi settings apply when the Wi-Fi starts (at the latest at the next start of the Pi)."
	default:
		nd.log.Warn("Wi-Fi settings saved but not applied", "err", err)
		return "The new Wi-Fi settings are saved but apply only at the next start of the Pi (" + err.Error() + ")."
	}
}

// diagnostics gathers what a bug report needs. Secrets are left out: the
// node key is never read, peerline.txt's passwords and codes are
// replaced, and so is the metrics token.
func (nd *node) diagnostics(ctx context.Context) (control.Diagnostics, error) {
	var d control.Diagnostics
	add := func(name string, v any) {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			b = []byte(err.Error())
		}
		d.Files = append(d.Files, control.DiagnosticFile{Name: name, Data: append(b, '\n')})
	}
	if st, err := nd.status(ctx); err == nil {
		add("status.json", st)
	} else {
		add("status-error.txt", err.Error())
	}
	if ph, err := nd.phones(ctx); err == nil {
		add("phones.json", ph)
	}
	if calls, err := nd.calls(ctx); err == nil {
		add("calls.json", calls)
	}
	add("logs.json", nd.logs())
	if c, err := nd.counters(ctx); err == nil {
		add("counters.json", c)
	}
	cfg := *nd.cfg.Load()
	if cfg.Console.MetricsToken != "" {
		cfg.Console.MetricsToken = "<removed>"
	}
	add("peerlined.json", cfg)
	// The supervisor's own status file carries the rewriters' counters.
	if b, err := os.ReadFile(filepath.Join(cfg.RunDir, "status.json")); err == nil {
		d.Files = append(d.Files, control.DiagnosticFile{Name: "supervisor-status.json", Data: b})
	}
	if b, err := os.ReadFile(nd.bootFile); err == nil && len(b) <= bootconfig.MaxSize {
		d.Files = append(d.Files, control.DiagnosticFile{Name: "peerline.txt", Data: []byte(bootconfig.Redact(string(b)))})
	}
	if b, err := os.ReadFile(nd.bootErrorFile); err == nil {
		d.Files = append(d.Files, control.DiagnosticFile{Name: "boot-config-error.txt", Data: b})
	}
	d.Files = append(d.Files, control.DiagnosticFile{Name: "version.txt", Data: []byte(nd.version + "\n")})
	return d, nil
}

func (nd *node) passwordSet() bool {
	_, err := adminpass.Load(adminpass.Path(nd.cfg.Load().StateDir))
	return err == nil
}
