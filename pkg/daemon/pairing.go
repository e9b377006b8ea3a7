package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/peerline/peerline/pkg/atomicfile"
	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/invite"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/peerpath"
)

// joinTimeout bounds `peerline join`: the inviter answers within a few
// round trips when it is online.
const joinTimeout = 20 * time.Second

// pairing is invites, joining and unpairing. It edits the config file (the
// one place peers live, so a reboot keeps them) and hands the new config to
// the daemon as a reload would.
//
// Pairing over the rendezvous servers: the joiner adds the inviter as a
// peer and connects to it with a Hello carrying the invite's proof in its
// box; the inviter, asked to introduce a key it does not know, checks the
// proof (Store.Redeem, once per code), adds the joiner as a peer and
// answers with its own Hello. The joiner's `join` returns when that
// answer arrives, and undoes its config change if none comes.
type pairing struct {
	configPath string
	reload     chan<- *config.Config
	log        *slog.Logger
	key        nodekey.Key
	cfg        func() *config.Config
	lines      func() []int
	store      *invite.Store

	// editMu serializes edits of the config file.
	editMu sync.Mutex

	mu sync.Mutex
	// joining are the joins waiting for their inviter's answer.
	joining map[nodekey.Key]*joinWait
	// forget, if set, deletes the short form of an invite from the
	// rendezvous servers once it is used or revoked (shortcode.go).
	forget func(blobID [16]byte)
	// firstHandshake says, for a peer paired a moment ago, whether this
	// node starts the first handshake with it (initiates).
	firstHandshake map[nodekey.Key]firstRole
}

type firstRole struct {
	initiate bool
	until    time.Time
}

// firstRoleFor bounds how long after pairing the joiner keeps the role of
// initiator: long enough for the first handshake, after which the order
// of the keys decides, as for every other peer.
const firstRoleFor = 30 * time.Second

// initiates implements peerpath.Options.Initiates: the joiner starts the
// first handshake. Its tunnel is up before the inviter has even seen the
// request, and a phone on it may already be sending (someone who just
// typed a code tends to call at once): that data waits on the handshake.
// When the end without data initiates, the end with data cannot send
// until the initiator's first packet confirms the keys; on the relay that
// is two more trips through the server. The inviter's phone cannot be
// sending yet: it learns the joiner's index only now.
func (pr *pairing) initiates(peer nodekey.Key) (initiate, decided bool) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	r, ok := pr.firstHandshake[peer]
	if !ok {
		return false, false
	}
	if time.Now().After(r.until) {
		delete(pr.firstHandshake, peer)
		return false, false
	}
	return r.initiate, true
}

func (pr *pairing) setFirstRole(peer nodekey.Key, initiate bool) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.firstHandshake[peer] = firstRole{initiate: initiate, until: time.Now().Add(firstRoleFor)}
}

type joinWait struct {
	proof [32]byte
	done  chan invite.Hello
}

func newPairing(cfg *config.Config, configPath string, reload chan<- *config.Config, lines func() []int, current func() *config.Config, log *slog.Logger) (*pairing, error) {
	key, _, err := nodekey.LoadOrCreate(cfg.PrivateKeyFile)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	store, err := invite.OpenStore(filepath.Join(cfg.StateDir, "invites.json"))
	if err != nil {
		return nil, err
	}
	return &pairing{configPath: configPath, reload: reload, log: log, key: key, cfg: current, lines: lines,
		store: store, joining: map[nodekey.Key]*joinWait{}, firstHandshake: map[nodekey.Key]firstRole{}}, nil
}

// pathHooks plug pairing into the path manager.
func (pr *pairing) pathHooks(o *peerpath.Options) {
	o.Pair = pr.hello
	o.Incoming = pr.incoming
	o.OnPair = pr.onHello
	o.Initiates = pr.initiates
	o.OnInviteJoin = pr.onInviteJoin
}

// hello is what this node tells peer in every box: its name and lines, and
// the proof while joining it.
func (pr *pairing) hello(peer nodekey.Key) []byte {
	h := pr.ownHello()
	pr.mu.Lock()
	if w := pr.joining[peer]; w != nil {
		proof := w.proof
		h.Proof = &proof
	}
	pr.mu.Unlock()
	b, err := invite.AppendHello(nil, h)
	if err != nil {
		pr.log.Warn("cannot tell peers this node's name and lines", "err", err)
		return nil
	}
	return b
}

// ownHello is this node's name and lines, without a proof.
func (pr *pairing) ownHello() invite.Hello {
	h := invite.Hello{Name: helloName(pr.cfg().Name), Lines: pr.lines()}
	if len(h.Lines) > invite.MaxHelloLines {
		h.Lines = h.Lines[:invite.MaxHelloLines]
	}
	return h
}

func helloName(name string) string {
	if len(name) > invite.MaxNameLen {
		return name[:invite.MaxNameLen]
	}
	return name
}

// incoming handles an introduction request from a key that is not a peer:
// a valid, unused invite proof makes it one. It runs on the socket's
// reader, so the config change happens in the background.
//
// It never lets the request itself through (it returns false): once the
// joiner is a peer, this node's path manager connects to it, and the
// server then tells both sides to punch at the same moment. Answering at
// once would start the joiner punching while this node is still setting
// up the tunnel, and on routers that answer unsolicited packets
// themselves (input policy accept) those early probes leave conntrack
// entries that move the mapping and spoil the direct path.
func (pr *pairing) incoming(from nodekey.Key, pair []byte) bool {
	h, err := invite.ParseHello(pair)
	if err != nil || h.Proof == nil {
		return false
	}
	pr.redeem(from, h, *h.Proof)
	return false
}

// onInviteJoin takes a join box a joiner sent with its fetch of one of our
// invites' short form (shortcode.go): it is a join request that needs no
// round trip through the server after the fetch, so the pairing starts
// while the joiner is still opening the blob.
func (pr *pairing) onInviteJoin(id [16]byte, box []byte) {
	go func() {
		secret, ok := pr.store.ByBlobID(time.Now(), id)
		if !ok {
			return
		}
		joiner, helloBytes, err := invite.OpenJoin(secret, box)
		if err != nil {
			pr.log.Warn("refused a join box that does not open with its invite's secret", "err", err)
			return
		}
		h, err := invite.ParseHello(helloBytes)
		if err != nil {
			pr.log.Warn("refused a join box with a bad hello", "from", joiner, "err", err)
			return
		}
		// The box opened with the secret: that is what the proof proves.
		pr.redeem(joiner, h, invite.Proof(secret, pr.key.Public(), joiner))
	}()
}

// redeem marks the invite proof answers used and pairs with from; the path
// manager then connects to it.
func (pr *pairing) redeem(from nodekey.Key, h invite.Hello, proof [32]byte) {
	err := pr.store.Redeem(time.Now(), proof, pr.key.Public(), from)
	switch {
	case err == nil:
		pr.log.Info("invite redeemed; pairing", "peer", from, "name", h.Name)
		pr.setFirstRole(from, false)
		pr.forgetUsedBy(from)
	case errors.Is(err, invite.ErrRetry):
		// The joiner did not get our answer (or we crashed before saving
		// the peer): pair if not yet paired, and answer again.
	default:
		pr.log.Warn("refused a join request", "from", from, "name", h.Name, "reason", err)
		return
	}
	go func() {
		if _, err := pr.addPeer(from, h.Name, h.Lines); err != nil {
			pr.log.Error("saving the new peer", "peer", from, "err", err)
		}
	}()
}

// forgetUsedBy deletes from the servers the short forms of the invites
// joiner used: a third Pi given the same code then hears at once that it
// is no longer valid, instead of waiting for an answer that never comes.
func (pr *pairing) forgetUsedBy(joiner nodekey.Key) {
	if pr.forget == nil {
		return
	}
	for _, e := range pr.store.List(time.Now()) {
		if e.Joiner == joiner {
			if id, ok := pr.store.BlobID(e.ID); ok {
				pr.forget(id)
			}
		}
	}
}

// onHello takes a peer's Hello: it completes a join, and keeps the peer's
// name and lines (for the phonebook) up to date.
func (pr *pairing) onHello(peer nodekey.Key, pair []byte) {
	h, err := invite.ParseHello(pair)
	if err != nil {
		return
	}
	pr.mu.Lock()
	w := pr.joining[peer]
	pr.mu.Unlock()
	if w != nil {
		select {
		case w.done <- h:
		default:
		}
		return
	}
	go pr.updatePeer(peer, h)
}

func (pr *pairing) updatePeer(peer nodekey.Key, h invite.Hello) {
	err := pr.edit(func(c *config.Config) error {
		for n := range c.Peers {
			p := &c.Peers[n]
			if p.PublicKey != peer {
				continue
			}
			if (h.Name == "" || p.Renamed || p.Name == h.Name) && slices.Equal(p.Lines, h.Lines) {
				return errNoChange
			}
			if h.Name != "" && !p.Renamed {
				p.Name = h.Name
			}
			p.Lines = slices.Clone(h.Lines)
			return nil
		}
		return errNoChange
	})
	if err != nil && !errors.Is(err, errNoChange) {
		pr.log.Warn("updating a peer's name and lines", "peer", peer, "err", err)
	}
}

var errNoChange = errors.New("no change")

// edit changes the config file through fn, validates the result, writes it
// safely and hands it to the daemon. fn returning errNoChange writes
// nothing.
func (pr *pairing) edit(fn func(*config.Config) error) error {
	pr.editMu.Lock()
	defer pr.editMu.Unlock()
	c, err := config.Load(pr.configPath)
	if err != nil {
		return fmt.Errorf("reading the config to change it: %w", err)
	}
	if err := fn(c); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	checked, err := config.Parse(b)
	if err != nil {
		return fmt.Errorf("the changed config would not be valid, so nothing was changed: %w", err)
	}
	if err := atomicfile.WriteFile(pr.configPath, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("saving the config: %w", err)
	}
	select {
	case pr.reload <- checked:
	case <-time.After(10 * time.Second):
		return errors.New("the config was saved but the daemon did not take it; restart peerlined")
	}
	return nil
}

// addPeer pins key as a peer under the next free index, or returns the
// index it already has.
func (pr *pairing) addPeer(key nodekey.Key, name string, lines []int) (control.PeerRef, error) {
	var ref control.PeerRef
	err := pr.edit(func(c *config.Config) error {
		for _, p := range c.Peers {
			if p.PublicKey == key {
				ref = control.PeerRef{Index: p.Index, Name: p.Name}
				return errNoChange
			}
		}
		i := nextFreeIndex(c)
		if i == 0 {
			return fmt.Errorf("this Pi has %d peers, the most it can have: remove one first (`peerline remove`)", numplan.MaxNode-numplan.MinNode+1)
		}
		c.Peers = append(c.Peers, config.Peer{Index: i, Name: name, PublicKey: key, Keepalive: 25, Lines: slices.Clone(lines)})
		ref = control.PeerRef{Index: i, Name: name}
		return nil
	})
	if errors.Is(err, errNoChange) {
		err = nil
	}
	return ref, err
}

func nextFreeIndex(c *config.Config) int {
	used := map[int]bool{}
	for _, p := range c.Peers {
		used[p.Index] = true
	}
	for i := numplan.MinNode; i <= numplan.MaxNode; i++ {
		if !used[i] {
			return i
		}
	}
	return 0
}

// create makes a new invite with this node's servers.
func (pr *pairing) create(ttl time.Duration) (invite.Invite, error) {
	cfg := pr.cfg()
	if len(cfg.Rendezvous) == 0 {
		return invite.Invite{}, errors.New("this Pi has no rendezvous server, so no other Pi could find it: add one (rendezvous = host:port KEY in peerline.txt, or \"rendezvous\" in the config) first")
	}
	var servers []invite.Server
	for _, r := range cfg.Rendezvous {
		s, err := inviteServer(r)
		if err != nil {
			return invite.Invite{}, err
		}
		servers = append(servers, s)
		if len(servers) == invite.MaxServers {
			break
		}
	}
	if ttl <= 0 {
		ttl = invite.DefaultTTL
	}
	return pr.store.Create(time.Now(), ttl, pr.key.Public(), inviteName(cfg.Name), servers)
}

// inviteName fits the node name into an invite's alphabet (it is only
// shown to the joiner).
func inviteName(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.':
			b.WriteRune(r)
		case r == ' ' || r == '_':
			b.WriteByte('-')
		}
		if b.Len() == invite.MaxNameLen {
			break
		}
	}
	return b.String()
}

func inviteServer(r config.Rendezvous) (invite.Server, error) {
	host, port, err := splitHostPort(r.Address)
	if err != nil {
		return invite.Server{}, fmt.Errorf("rendezvous %s: %w", r.Address, err)
	}
	s := invite.Server{Host: host, Port: port, Port2: port + 1, Key: r.Key}
	if r.Address2 != "" {
		host2, port2, err := splitHostPort(r.Address2)
		if err != nil {
			return invite.Server{}, fmt.Errorf("rendezvous %s: %w", r.Address2, err)
		}
		if host2 != host {
			return invite.Server{}, fmt.Errorf("rendezvous %s: its second address is on another host (%s), which an invite cannot carry; use a server whose two ports share one address", r.Address, host2)
		}
		s.Port2 = port2
	}
	return s, nil
}

func splitHostPort(hp string) (string, uint16, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return host, uint16(n), nil
}

// join pairs with the inviter of code and waits for its answer.
func (pr *pairing) join(ctx context.Context, code string) (control.PeerRef, error) {
	iv, err := invite.Parse(code)
	if err != nil {
		return control.PeerRef{}, err
	}
	if iv.Expired(time.Now()) {
		return control.PeerRef{}, fmt.Errorf("this invite expired at %s: ask %s for a new one (`peerline invite`)", iv.Expires.Local().Format("2006-01-02 15:04"), displayName(iv.Name))
	}
	joinStage(ctx, stageChecked, "")
	if iv.Short() {
		if err := pr.fetchInvite(ctx, &iv); err != nil {
			return control.PeerRef{}, err
		}
		joinStage(ctx, stageServer, "")
	} else {
		joinStage(ctx, stageServer, "not needed: the long code holds everything")
	}
	if iv.Inviter == pr.key.Public() {
		return control.PeerRef{}, errors.New("this is this Pi's own invite: type the code on the other Pi")
	}
	for _, p := range pr.cfg().Peers {
		if p.PublicKey == iv.Inviter {
			return control.PeerRef{}, fmt.Errorf("already paired with %s as peer %d; `peerline remove %d` first to pair again", displayName(p.Name), p.Index, p.Index)
		}
	}
	w := &joinWait{proof: invite.Proof(iv.Secret, iv.Inviter, pr.key.Public()), done: make(chan invite.Hello, 1)}
	pr.mu.Lock()
	if pr.joining[iv.Inviter] != nil {
		pr.mu.Unlock()
		return control.PeerRef{}, errors.New("already joining this inviter; wait for that to finish")
	}
	pr.joining[iv.Inviter] = w
	pr.mu.Unlock()
	defer func() {
		pr.mu.Lock()
		delete(pr.joining, iv.Inviter)
		pr.mu.Unlock()
	}()

	pr.setFirstRole(iv.Inviter, true)
	// Pin the inviter and its servers; undone below if it never answers.
	var ref control.PeerRef
	var addedServers []config.Rendezvous
	err = pr.edit(func(c *config.Config) error {
		for _, s := range iv.Servers {
			r := config.Rendezvous{Address: net.JoinHostPort(s.Host, strconv.Itoa(int(s.Port))), Key: s.Key}
			if s.Port2 != s.Port+1 {
				r.Address2 = net.JoinHostPort(s.Host, strconv.Itoa(int(s.Port2)))
			}
			if !slices.ContainsFunc(c.Rendezvous, func(x config.Rendezvous) bool { return x.Key == r.Key && x.Address == r.Address }) {
				c.Rendezvous = append(c.Rendezvous, r)
				addedServers = append(addedServers, r)
			}
		}
		i := nextFreeIndex(c)
		if i == 0 {
			return errors.New("this Pi has as many peers as it can have: remove one first (`peerline remove`)")
		}
		c.Peers = append(c.Peers, config.Peer{Index: i, Name: iv.Name, PublicKey: iv.Inviter, Keepalive: 25})
		ref = control.PeerRef{Index: i, Name: iv.Name}
		return nil
	})
	if err != nil {
		return control.PeerRef{}, err
	}
	joinStage(ctx, stageWaiting, "")
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	select {
	case h := <-w.done:
		pr.log.Info("paired by invite", "peer", iv.Inviter, "index", ref.Index, "name", h.Name)
		pr.updatePeer(iv.Inviter, h)
		if h.Name != "" {
			ref.Name = h.Name
		}
		return ref, nil
	case <-ctx.Done():
	}
	// Nothing came back: leave the config as it was.
	undo := pr.edit(func(c *config.Config) error {
		c.Peers = slices.DeleteFunc(c.Peers, func(p config.Peer) bool { return p.PublicKey == iv.Inviter })
		c.Rendezvous = slices.DeleteFunc(c.Rendezvous, func(r config.Rendezvous) bool { return slices.Contains(addedServers, r) })
		return nil
	})
	if undo != nil {
		pr.log.Error("undoing a failed join", "err", undo)
	}
	return control.PeerRef{}, fmt.Errorf("%s's Pi did not answer within %v. It may be offline or unable to reach its rendezvous server, or the code was already used, revoked or made for another Pi (its log says which). Nothing was changed here; try again, or ask for a new code (`peerline invite`)", displayName(iv.Name), joinTimeout)
}

func displayName(name string) string {
	if name == "" {
		return "the inviter"
	}
	return name
}

// findPeer resolves a peer by index or name.
func findPeer(c *config.Config, which string) (config.Peer, error) {
	if i, err := strconv.Atoi(which); err == nil {
		for _, p := range c.Peers {
			if p.Index == i {
				return p, nil
			}
		}
		return config.Peer{}, fmt.Errorf("no peer with index %d; `peerline peers` lists them", i)
	}
	var found []config.Peer
	for _, p := range c.Peers {
		if strings.EqualFold(p.Name, which) {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return config.Peer{}, fmt.Errorf("no peer named %q; `peerline peers` lists them", which)
	case 1:
		return found[0], nil
	}
	return config.Peer{}, fmt.Errorf("%d peers are named %q; use the index instead (`peerline peers`)", len(found), which)
}

// remove unpairs a peer: its tunnel and namespace go with the reload.
func (pr *pairing) remove(which string) (control.PeerRef, error) {
	var ref control.PeerRef
	err := pr.edit(func(c *config.Config) error {
		p, err := findPeer(c, which)
		if err != nil {
			return err
		}
		ref = control.PeerRef{Index: p.Index, Name: p.Name}
		c.Peers = slices.DeleteFunc(c.Peers, func(x config.Peer) bool { return x.Index == p.Index })
		return nil
	})
	return ref, err
}
