package console

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"rsc.io/qr"

	"github.com/peerline/peerline/pkg/adminpass"
	"github.com/peerline/peerline/pkg/control"
)

// callTimeout bounds one control call made for a page.
const callTimeout = 10 * time.Second

func (c *Console) routes(mux *http.ServeMux) {
	if c.opts.Status != nil {
		mux.Handle("/{$}", c.opts.Status)
		mux.Handle("/status.json", c.opts.Status)
	}
	mux.HandleFunc("GET /setup", c.setupPage)
	mux.HandleFunc("POST /setup", c.setupPost)
	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.loginPost)
	mux.HandleFunc("POST /logout", c.logged(c.logout))
	mux.HandleFunc("GET /peers", c.logged(c.peersPage))
	mux.HandleFunc("POST /peers/rename", c.logged(c.renamePost))
	mux.HandleFunc("GET /peers/remove", c.logged(c.removePage))
	mux.HandleFunc("POST /peers/remove", c.logged(c.removePost))
	mux.HandleFunc("POST /peers/ping", c.logged(c.pingPost))
	mux.HandleFunc("GET /invite", c.logged(c.invitePage))
	mux.HandleFunc("POST /invite", c.logged(c.invitePost))
	mux.HandleFunc("POST /invite/revoke", c.logged(c.revokePost))
	mux.HandleFunc("GET /join", c.logged(c.joinPage))
	mux.HandleFunc("POST /join", c.logged(c.joinPost))
	mux.HandleFunc("GET /join/{id}", c.logged(c.joinProgress))
	mux.HandleFunc("GET /phones", c.logged(c.phonesPage))
	mux.HandleFunc("POST /phones/label", c.logged(c.labelPost))
	mux.HandleFunc("GET /phones/forget", c.logged(c.forgetPage))
	mux.HandleFunc("POST /phones/forget", c.logged(c.forgetPost))
	mux.HandleFunc("GET /lines", c.logged(c.linesPage))
	mux.HandleFunc("GET /calls", c.logged(c.callsPage))
	mux.HandleFunc("GET /logs", c.logged(c.logsPage))
	mux.HandleFunc("POST /diagnostics", c.logged(c.diagnosticsPost))
	mux.HandleFunc("GET /settings", c.logged(c.settingsPage))
	mux.HandleFunc("POST /settings", c.logged(c.settingsPost))
	mux.HandleFunc("POST /password", c.logged(c.passwordPost))
	for path, h := range c.opts.Extra {
		if c.opts.ExtraOpen[path] {
			mux.Handle(path, h)
			continue
		}
		mux.HandleFunc(path, c.logged(func(w http.ResponseWriter, r *http.Request, _ *session) { h.ServeHTTP(w, r) }))
	}
}

// Mount serves h at path: behind the login, or as it is when open (h
// checks access itself, as /metrics does with its token). Call it before
// Handler.
func (c *Console) Mount(path string, h http.Handler, open bool) {
	if c.opts.Extra == nil {
		c.opts.Extra = map[string]http.Handler{}
	}
	if c.opts.ExtraOpen == nil {
		c.opts.ExtraOpen = map[string]bool{}
	}
	c.opts.Extra[path] = h
	c.opts.ExtraOpen[path] = open
}

// Authed reports whether r carries a live session (for handlers mounted
// through Options.ExtraOpen that accept a session or their own token).
func (c *Console) Authed(r *http.Request) bool {
	_, s := c.auth.lookup(c.opts.Now(), r)
	return s != nil
}

// logged wraps a handler that needs a login. A POST must also carry the
// session's CSRF token.
func (c *Console) logged(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, s := c.auth.lookup(c.opts.Now(), r)
		if s == nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "not logged in (or the session expired): log in again at /login", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && !c.checkForm(w, r, s.csrf) {
			return
		}
		h(w, r, s)
	}
}

// checkForm parses a POST form and checks its CSRF token.
func (c *Console) checkForm(w http.ResponseWriter, r *http.Request, want string) bool {
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "form too large", http.StatusRequestEntityTooLarge)
			return false
		}
		http.Error(w, "bad form", http.StatusBadRequest)
		return false
	}
	if !tokensEqual(want, r.PostForm.Get("csrf")) {
		c.log.Warn("console: form without a valid CSRF token refused", "addr", r.RemoteAddr, "path", r.URL.Path)
		http.Error(w, "the form is out of date or came from another site: reload the page and try again", http.StatusForbidden)
		return false
	}
	return true
}

func (c *Console) call(r *http.Request, cmd string, args, result any) error {
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	return c.opts.Control.Call(ctx, cmd, args, result)
}

// changed logs a change to the journal with who made it.
func (c *Console) changed(r *http.Request, what string, args ...any) {
	c.log.Info("console: "+what, append([]any{"addr", r.RemoteAddr}, args...)...)
}

// flash stores a message for the next page the session sees.
func (c *Console) flash(s *session, msg string) {
	c.auth.mu.Lock()
	s.flash = msg
	c.auth.mu.Unlock()
}

func (c *Console) takeFlash(s *session) string {
	c.auth.mu.Lock()
	defer c.auth.mu.Unlock()
	m := s.flash
	s.flash = ""
	return m
}

func (c *Console) base(s *session, title, nav string) view {
	v := view{Title: title, Nav: nav}
	if s != nil {
		v.CSRF, v.LoggedIn, v.Flash = s.csrf, true, c.takeFlash(s)
	}
	return v
}

func (c *Console) redirect(w http.ResponseWriter, r *http.Request, s *session, to, msg string) {
	if msg != "" {
		c.flash(s, msg)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// --- first use, login, logout, password ---

// setupState says whether the first-use page may be used by r, and why
// not.
func (c *Console) setupState(r *http.Request) (ok bool, why string) {
	if _, err := adminpass.Load(c.opts.PasswordFile); !errors.Is(err, adminpass.ErrNotSet) {
		if err != nil {
			return false, "The password file cannot be read (" + err.Error() + "). Set a new password with admin_password in peerline.txt."
		}
		return false, "An admin password is already set. Log in, or reset it with admin_password in peerline.txt on the SD card."
	}
	if zoneOf(r) != PhonePort {
		return false, "The password can be set here only from the phone port: plug a laptop into the Pi's Ethernet port (or the phones' switch) and open http://10.0.1.2/setup, or write admin_password in peerline.txt on the SD card."
	}
	if c.opts.Now().Sub(c.opts.Started) > SetupWindow {
		return false, fmt.Sprintf("The first-use page is open only for %v after the Pi starts. Switch the Pi off and on again and open this page within %v, or write admin_password in peerline.txt on the SD card.", SetupWindow, SetupWindow)
	}
	return true, ""
}

// preToken returns the pre-login CSRF token, setting its cookie if new.
func (c *Console) preToken(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(preCookie); err == nil && len(ck.Value) == 43 {
		return ck.Value
	}
	t := randomToken()
	http.SetCookie(w, &http.Cookie{Name: preCookie, Value: t, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return t
}

func (c *Console) checkPre(w http.ResponseWriter, r *http.Request) bool {
	ck, err := r.Cookie(preCookie)
	if err != nil {
		c.log.Warn("console: form without a CSRF cookie refused", "addr", r.RemoteAddr, "path", r.URL.Path)
		http.Error(w, "the form is out of date or cookies are off: reload the page and try again", http.StatusForbidden)
		return false
	}
	return c.checkForm(w, r, ck.Value)
}

type setupData struct {
	Allowed bool
	Why     string
	Window  time.Duration
}

func (c *Console) setupPage(w http.ResponseWriter, r *http.Request) {
	ok, why := c.setupState(r)
	v := c.base(nil, "Set the admin password", "")
	v.CSRF = c.preToken(w, r)
	v.Data = setupData{Allowed: ok, Why: why, Window: SetupWindow}
	code := http.StatusOK
	if !ok {
		code = http.StatusForbidden
	}
	c.render(w, r, code, "setup", v)
}

func (c *Console) setupPost(w http.ResponseWriter, r *http.Request) {
	if !c.checkPre(w, r) {
		return
	}
	ok, why := c.setupState(r)
	v := c.base(nil, "Set the admin password", "")
	v.CSRF = c.preToken(w, r)
	v.Data = setupData{Allowed: ok, Why: why, Window: SetupWindow}
	if !ok {
		c.log.Warn("console: first-use page refused", "addr", r.RemoteAddr, "zone", zoneOf(r).String(), "why", why)
		c.render(w, r, http.StatusForbidden, "setup", v)
		return
	}
	src, _ := sourceAddr(r)
	if !c.auth.allowAttempt(c.opts.Now(), src) {
		v.Error = "Too many attempts; wait a minute and try again."
		c.render(w, r, http.StatusTooManyRequests, "setup", v)
		return
	}
	pw, again := r.PostForm.Get("password"), r.PostForm.Get("again")
	if err := adminpass.Check(pw); err != nil {
		v.Error = capitalize(err.Error()) + "."
		c.render(w, r, http.StatusBadRequest, "setup", v)
		return
	}
	if pw != again {
		v.Error = "The two passwords differ; type the same password twice."
		c.render(w, r, http.StatusBadRequest, "setup", v)
		return
	}
	if err := c.auth.setFirst(c.opts.PasswordFile, pw, c.opts.Hash); err != nil {
		if errors.Is(err, errPasswordSet) {
			v.Data = setupData{Why: "An admin password is already set. Log in, or reset it with admin_password in peerline.txt on the SD card."}
			c.render(w, r, http.StatusForbidden, "setup", v)
			return
		}
		c.log.Error("console: saving the first password", "err", err)
		v.Error = "The password could not be saved: " + err.Error()
		c.render(w, r, http.StatusInternalServerError, "setup", v)
		return
	}
	c.changed(r, "admin password set on the first-use page")
	c.startSession(w, r, "/peers", "Password set. Welcome!")
}

func (c *Console) startSession(w http.ResponseWriter, r *http.Request, next, msg string) {
	src, _ := sourceAddr(r)
	tok, s := c.auth.newSession(c.opts.Now(), src)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	c.redirect(w, r, s, next, msg)
}

type loginData struct {
	Next string
	// Setup links to the first-use page while it is open for r.
	Setup bool
	NoPw  bool
}

// safeNext keeps a redirect target on this site.
func safeNext(n string) string {
	if !strings.HasPrefix(n, "/") || strings.HasPrefix(n, "//") || strings.ContainsAny(n, "\\\r\n") || len(n) > 200 {
		return "/peers"
	}
	return n
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, s := c.auth.lookup(c.opts.Now(), r); s != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	v := c.base(nil, "Log in", "")
	v.CSRF = c.preToken(w, r)
	c.render(w, r, http.StatusOK, "login", c.loginView(r, v, r.URL.Query().Get("next")))
}

func (c *Console) loginView(r *http.Request, v view, next string) view {
	_, err := adminpass.Load(c.opts.PasswordFile)
	setup, _ := c.setupState(r)
	v.Data = loginData{Next: safeNext(next), Setup: setup, NoPw: errors.Is(err, adminpass.ErrNotSet)}
	return v
}

func (c *Console) loginPost(w http.ResponseWriter, r *http.Request) {
	if !c.checkPre(w, r) {
		return
	}
	v := c.base(nil, "Log in", "")
	v.CSRF = c.preToken(w, r)
	next := r.PostForm.Get("next")
	src, _ := sourceAddr(r)
	if !c.auth.allowAttempt(c.opts.Now(), src) {
		c.log.Warn("console: login rate-limited", "addr", r.RemoteAddr)
		v.Error = "Too many attempts; wait a minute and try again."
		c.render(w, r, http.StatusTooManyRequests, "login", c.loginView(r, v, next))
		return
	}
	pw := r.PostForm.Get("password")
	if len(pw) > adminpass.MaxLength {
		pw = ""
	}
	ok, err := c.auth.verify(c.opts.PasswordFile, pw)
	if err != nil && !errors.Is(err, adminpass.ErrNotSet) {
		c.log.Error("console: checking the password", "err", err)
	}
	if !ok {
		c.log.Warn("console: login failed", "addr", r.RemoteAddr)
		v.Error = "Wrong password."
		if errors.Is(err, adminpass.ErrNotSet) {
			v.Error = "No password is set yet."
		}
		c.render(w, r, http.StatusUnauthorized, "login", c.loginView(r, v, next))
		return
	}
	c.changed(r, "logged in")
	c.startSession(w, r, safeNext(next), "")
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		c.auth.endSession(ck.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	c.changed(r, "logged out")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (c *Console) passwordPost(w http.ResponseWriter, r *http.Request, s *session) {
	src, _ := sourceAddr(r)
	if !c.auth.allowAttempt(c.opts.Now(), src) {
		c.redirect(w, r, s, "/settings", "Too many attempts; wait a minute and try again.")
		return
	}
	ok, _ := c.auth.verify(c.opts.PasswordFile, r.PostForm.Get("current"))
	if !ok {
		c.log.Warn("console: password change with a wrong current password", "addr", r.RemoteAddr)
		c.redirect(w, r, s, "/settings", "The current password is wrong; nothing was changed.")
		return
	}
	pw := r.PostForm.Get("password")
	if err := adminpass.Check(pw); err != nil {
		c.redirect(w, r, s, "/settings", capitalize(err.Error())+"; nothing was changed.")
		return
	}
	if pw != r.PostForm.Get("again") {
		c.redirect(w, r, s, "/settings", "The two new passwords differ; nothing was changed.")
		return
	}
	if err := c.auth.change(c.opts.PasswordFile, pw, c.opts.Hash); err != nil {
		c.redirect(w, r, s, "/settings", "The password could not be saved: "+err.Error())
		return
	}
	c.changed(r, "admin password changed; every session logged out")
	c.auth.endAll()
	c.startSession(w, r, "/settings", "Password changed. Other browsers were logged out.")
}

// --- peers ---

type peersData struct {
	Status control.Status
}

func (c *Console) peersPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := c.base(s, "Peers", "peers")
	var st control.Status
	if err := c.call(r, control.CmdStatus, nil, &st); err != nil {
		v.Error = err.Error()
	}
	v.Refresh = 10
	v.Data = peersData{Status: st}
	c.render(w, r, http.StatusOK, "peers", v)
}

func (c *Console) renamePost(w http.ResponseWriter, r *http.Request, s *session) {
	peer, name := r.PostForm.Get("peer"), r.PostForm.Get("name")
	var ref control.PeerRef
	if err := c.call(r, control.CmdRename, control.RenameArgs{Peer: peer, Name: name}, &ref); err != nil {
		c.redirect(w, r, s, "/peers", "Not renamed: "+err.Error())
		return
	}
	c.changed(r, "peer renamed", "peer", ref.Index, "name", ref.Name)
	c.redirect(w, r, s, "/peers", fmt.Sprintf("Peer %d is now called %s.", ref.Index, ref.Name))
}

type confirmData struct {
	What, Action, Field, Value, Back string
}

func (c *Console) removePage(w http.ResponseWriter, r *http.Request, s *session) {
	peer := r.URL.Query().Get("peer")
	var st control.Status
	if err := c.call(r, control.CmdStatus, nil, &st); err != nil {
		c.redirect(w, r, s, "/peers", err.Error())
		return
	}
	for _, p := range st.Peers {
		if strconv.Itoa(p.Index) == peer {
			v := c.base(s, "Remove a peer", "peers")
			v.Data = confirmData{What: fmt.Sprintf("Remove peer %d (%s)? Its tunnel goes, your phones can no longer call its phones, and pairing again needs a new invite.", p.Index, p.Name),
				Action: "/peers/remove", Field: "peer", Value: peer, Back: "/peers"}
			c.render(w, r, http.StatusOK, "confirm", v)
			return
		}
	}
	c.redirect(w, r, s, "/peers", "No such peer.")
}

func (c *Console) removePost(w http.ResponseWriter, r *http.Request, s *session) {
	var ref control.PeerRef
	if err := c.call(r, control.CmdRemove, control.PeerArgs{Peer: r.PostForm.Get("peer")}, &ref); err != nil {
		c.redirect(w, r, s, "/peers", "Not removed: "+err.Error())
		return
	}
	c.changed(r, "peer removed", "peer", ref.Index, "name", ref.Name)
	c.redirect(w, r, s, "/peers", fmt.Sprintf("Peer %d (%s) removed.", ref.Index, ref.Name))
}

func (c *Console) pingPost(w http.ResponseWriter, r *http.Request, s *session) {
	var res control.PingResult
	if err := c.call(r, control.CmdPing, control.PeerArgs{Peer: r.PostForm.Get("peer")}, &res); err != nil {
		c.redirect(w, r, s, "/peers", "Ping: "+err.Error())
		return
	}
	c.redirect(w, r, s, "/peers", fmt.Sprintf("Peer %d answered in %.1f ms over the %s path.", res.Index, float64(res.RTT)/float64(time.Millisecond), res.Path))
}

// --- invites and joins ---

type inviteData struct {
	New     *control.InviteResult
	QR      []byte
	Invites []control.InviteEntry
}

func (c *Console) invitePage(w http.ResponseWriter, r *http.Request, s *session) {
	v := c.base(s, "Invite a friend", "invite")
	var list []control.InviteEntry
	if err := c.call(r, control.CmdInvites, nil, &list); err != nil {
		v.Error = err.Error()
	}
	v.Data = inviteData{Invites: list}
	c.render(w, r, http.StatusOK, "invite", v)
}

func (c *Console) invitePost(w http.ResponseWriter, r *http.Request, s *session) {
	v := c.base(s, "Invite a friend", "invite")
	var res control.InviteResult
	if err := c.call(r, control.CmdInvite, control.InviteArgs{}, &res); err != nil {
		v.Error = "No invite made: " + err.Error()
		c.render(w, r, http.StatusOK, "invite", v)
		return
	}
	c.changed(r, "invite made", "id", res.ID, "expires", res.Expires)
	d := inviteData{New: &res}
	if q, err := qr.Encode(res.URI, qr.M); err == nil {
		q.Scale = 6
		d.QR = q.PNG()
	}
	var list []control.InviteEntry
	if err := c.call(r, control.CmdInvites, nil, &list); err == nil {
		d.Invites = list
	}
	v.Data = d
	c.render(w, r, http.StatusOK, "invite", v)
}

func (c *Console) revokePost(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PostForm.Get("id")
	if err := c.call(r, control.CmdRevokeInvite, control.RevokeInviteArgs{ID: id}, nil); err != nil {
		c.redirect(w, r, s, "/invite", "Not revoked: "+err.Error())
		return
	}
	c.changed(r, "invite revoked", "id", id)
	c.redirect(w, r, s, "/invite", "Invite revoked: the code no longer works.")
}

func (c *Console) joinPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, http.StatusOK, "join", c.base(s, "Join a friend", "join"))
}

func (c *Console) joinPost(w http.ResponseWriter, r *http.Request, s *session) {
	code := strings.TrimSpace(r.PostForm.Get("code"))
	var p control.JoinProgress
	if err := c.call(r, control.CmdJoinStart, control.JoinArgs{Code: code}, &p); err != nil {
		v := c.base(s, "Join a friend", "join")
		v.Error = err.Error()
		// The code stays in the box, to be corrected.
		v.Data = code
		c.render(w, r, http.StatusBadRequest, "join", v)
		return
	}
	c.changed(r, "join started", "join", p.ID)
	http.Redirect(w, r, "/join/"+url.PathEscape(p.ID), http.StatusSeeOther)
}

func (c *Console) joinProgress(w http.ResponseWriter, r *http.Request, s *session) {
	v := c.base(s, "Joining", "join")
	var p control.JoinProgress
	if err := c.call(r, control.CmdJoinProgress, control.JoinProgressArgs{ID: r.PathValue("id")}, &p); err != nil {
		v.Error = err.Error()
		c.render(w, r, http.StatusNotFound, "join", v)
		return
	}
	if !p.Done {
		v.Refresh = 1
	}
	v.Data = p
	c.render(w, r, http.StatusOK, "joining", v)
}

// --- phones ---

type phonesData struct {
	Phones []control.Phone
}

func (c *Console) phonesPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := c.base(s, "Phones", "phones")
	var ph []control.Phone
	if err := c.call(r, control.CmdPhones, nil, &ph); err != nil {
		v.Error = err.Error()
	}
	v.Data = phonesData{Phones: ph}
	c.render(w, r, http.StatusOK, "phones", v)
}

func formLine(r *http.Request) (int, bool) {
	l, err := strconv.Atoi(r.PostForm.Get("line"))
	return l, err == nil
}

func (c *Console) labelPost(w http.ResponseWriter, r *http.Request, s *session) {
	line, ok := formLine(r)
	if !ok {
		c.redirect(w, r, s, "/phones", "No such line.")
		return
	}
	label := r.PostForm.Get("label")
	if err := c.call(r, control.CmdLabelLine, control.LabelLineArgs{Line: line, Label: label}, nil); err != nil {
		c.redirect(w, r, s, "/phones", "Not labelled: "+err.Error())
		return
	}
	c.changed(r, "line labelled", "line", line, "label", label)
	c.redirect(w, r, s, "/phones", fmt.Sprintf("Line %d labelled.", line))
}

func (c *Console) forgetPage(w http.ResponseWriter, r *http.Request, s *session) {
	line, err := strconv.Atoi(r.URL.Query().Get("line"))
	if err != nil {
		c.redirect(w, r, s, "/phones", "No such line.")
		return
	}
	v := c.base(s, "Forget a line", "phones")
	v.Data = confirmData{What: fmt.Sprintf("Forget line %d? Its phone loses the line; plugged in again, it gets the next free one.", line),
		Action: "/phones/forget", Field: "line", Value: strconv.Itoa(line), Back: "/phones"}
	c.render(w, r, http.StatusOK, "confirm", v)
}

func (c *Console) forgetPost(w http.ResponseWriter, r *http.Request, s *session) {
	line, ok := formLine(r)
	if !ok {
		c.redirect(w, r, s, "/phones", "No such line.")
		return
	}
	if err := c.call(r, control.CmdForgetPhone, control.ForgetPhoneArgs{Line: line}, nil); err != nil {
		c.redirect(w, r, s, "/phones", "Not forgotten: "+err.Error())
		return
	}
	c.changed(r, "line forgotten", "line", line)
	c.redirect(w, r, s, "/phones", fmt.Sprintf("Line %d forgotten.", line))
}

// --- lines: the SIP service ---

// linesData is the Lines page: the SIP service's view and the trunks.
type linesData struct {
	SIP    control.Lines
	Trunks []trunkRow
}

// trunkRow is what the console shows of a trunk. It is built field by
// field so that the account (user, registrar, contact) and anything
// added to control.Trunk later never reach the page by accident; the
// password is not even in control.Trunk.
type trunkRow struct {
	Name, Prefix, State, Status string
	Lines                       []int
	Calls                       int
}

func (c *Console) linesPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := c.base(s, "Lines", "lines")
	var d linesData
	if err := c.call(r, control.CmdLines, nil, &d.SIP); err != nil {
		v.Error = err.Error()
	}
	var ts control.Trunks
	if err := c.call(r, control.CmdTrunks, nil, &ts); err != nil {
		v.Error = strings.TrimPrefix(v.Error+"; ", "; ") + err.Error()
	}
	for _, t := range ts.Trunks {
		d.Trunks = append(d.Trunks, trunkRow{Name: t.Name, Prefix: t.Prefix, State: t.State, Status: t.Status, Lines: t.Lines, Calls: t.Calls})
	}
	v.Data = d
	c.render(w, r, http.StatusOK, "lines", v)
}

// --- calls, logs, diagnostics ---

func (c *Console) callsPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := c.base(s, "Calls", "calls")
	var calls []control.CallInfo
	if err := c.call(r, control.CmdCalls, nil, &calls); err != nil {
		v.Error = err.Error()
	}
	v.Refresh = 5
	v.Data = calls
	c.render(w, r, http.StatusOK, "calls", v)
}

type logsData struct {
	Logs            []control.LogLine
	BootConfigError string
}

func (c *Console) logsPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := c.base(s, "Problems and logs", "logs")
	var d logsData
	if err := c.call(r, control.CmdLogs, nil, &d.Logs); err != nil {
		v.Error = err.Error()
	}
	var st control.Status
	if err := c.call(r, control.CmdStatus, nil, &st); err == nil {
		d.BootConfigError = st.BootConfigError
	}
	// Newest first: what went wrong last is what is looked for.
	for i, j := 0, len(d.Logs)-1; i < j; i, j = i+1, j-1 {
		d.Logs[i], d.Logs[j] = d.Logs[j], d.Logs[i]
	}
	v.Data = d
	c.render(w, r, http.StatusOK, "logs", v)
}

func (c *Console) diagnosticsPost(w http.ResponseWriter, r *http.Request, s *session) {
	var d control.Diagnostics
	if err := c.call(r, control.CmdDiagnostics, nil, &d); err != nil {
		c.redirect(w, r, s, "/logs", "No diagnostics: "+err.Error())
		return
	}
	now := c.opts.Now()
	var buf bytes.Buffer
	if err := writeBundle(&buf, d, now); err != nil {
		c.redirect(w, r, s, "/logs", "No diagnostics: "+err.Error())
		return
	}
	c.changed(r, "diagnostics downloaded", "bytes", buf.Len())
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="peerline-diagnostics-%s.tar.gz"`, now.UTC().Format("20060102-150405")))
	w.Write(buf.Bytes())
}

// writeBundle writes a diagnostics bundle as a gzipped tar.
func writeBundle(buf *bytes.Buffer, d control.Diagnostics, now time.Time) error {
	gz := gzip.NewWriter(buf)
	tw := tar.NewWriter(gz)
	for _, f := range d.Files {
		name := strings.Map(func(r rune) rune {
			if r == '/' || r == '\\' || r < ' ' {
				return '_'
			}
			return r
		}, f.Name)
		if err := tw.WriteHeader(&tar.Header{Name: "peerline-diagnostics/" + name, Mode: 0o644, Size: int64(len(f.Data)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// --- settings ---

type settingsData struct {
	Settings   control.Settings
	Rendezvous string
	// Form holds what was submitted when it was refused, so nothing typed
	// is lost.
	Form *control.SettingsArgs
}

func (c *Console) settingsPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := c.base(s, "Settings", "settings")
	var st control.Settings
	if err := c.call(r, control.CmdSettings, nil, &st); err != nil {
		v.Error = err.Error()
	}
	v.Data = settingsData{Settings: st, Rendezvous: strings.Join(st.Rendezvous, "\n")}
	c.render(w, r, http.StatusOK, "settings", v)
}

func (c *Console) settingsPost(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	a := control.SettingsArgs{
		Name: f.Get("name"), TimeZone: f.Get("time_zone"), WiFiSSID: f.Get("wifi_ssid"),
		WiFiPassword: f.Get("wifi_password"), WiFiCountry: f.Get("wifi_country"),
		Rendezvous: strings.Split(strings.ReplaceAll(f.Get("rendezvous"), "\r\n", "\n"), "\n"),
	}
	var st control.Settings
	if err := c.call(r, control.CmdSetSettings, a, &st); err != nil {
		v := c.base(s, "Settings", "settings")
		v.Error = "Nothing was changed: " + err.Error()
		var cur control.Settings
		c.call(r, control.CmdSettings, nil, &cur)
		a.WiFiPassword = ""
		v.Data = settingsData{Settings: cur, Rendezvous: f.Get("rendezvous"), Form: &a}
		c.render(w, r, http.StatusBadRequest, "settings", v)
		return
	}
	c.changed(r, "settings changed", "name", st.Name, "time_zone", st.TimeZone, "wifi_ssid", st.WiFiSSID)
	c.redirect(w, r, s, "/settings", strings.TrimSpace("Settings saved in peerline.txt and applied. "+st.Note))
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
