package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/dhcpd"
	"github.com/peerline/peerline/pkg/invite"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/pairing"
	"github.com/peerline/peerline/pkg/peerpath"
	"github.com/peerline/peerline/pkg/provision"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/statuspage"
)

// This file holds what the node answers on its control socket (and so to
// the web console and `peerline`): status, phones, pairing, pings, and the
// directory the phones are given.

// onlineWithin is how recent a handshake must be for a peer to count as
// online: WireGuard drops a session it has not renewed in 180 s.
const onlineWithin = 180 * time.Second

func decodeArgs(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("bad arguments: %w", err)
	}
	return nil
}

// pathManager is the supervisor's path manager, asked for on its own
// goroutine (it is replaced when the servers change).
func (nd *node) pathManager(ctx context.Context) (*peerpath.Manager, error) {
	var paths *peerpath.Manager
	if err := nd.sup.Do(ctx, func() { paths = nd.sup.Paths() }); err != nil {
		return nil, err
	}
	if paths == nil {
		return nil, errors.New("peerlined is still starting; try again in a moment")
	}
	return paths, nil
}

// putInvite stores or deletes an invite's short form on the servers
// (pkg/pairing's Options.PutInvite).
func (nd *node) putInvite(ctx context.Context, id [rendezvous.InviteIDLen]byte, expires time.Time, blob []byte, within time.Duration) (nodekey.Key, error) {
	paths, err := nd.pathManager(ctx)
	if err != nil {
		return nodekey.Key{}, err
	}
	return paths.PutInvite(ctx, id, expires, blob, within)
}

// sendPair sends pairing data to a peer on its path (pkg/pairing).
func (nd *node) sendPair(ctx context.Context, peer nodekey.Key, data []byte) error {
	paths, err := nd.pathManager(ctx)
	if err != nil {
		return err
	}
	return paths.SendPair(ctx, peer, data)
}

// ping probes a peer once on its current path.
func (nd *node) ping(ctx context.Context, which string) (*control.PingResult, error) {
	p, err := pairing.FindPeer(nd.cfg.Load(), which)
	if err != nil {
		return nil, err
	}
	paths, err := nd.pathManager(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	rtt, err := paths.Ping(ctx, p.PublicKey)
	st := paths.Status()[p.PublicKey]
	if err != nil {
		reason := st.Reason
		if reason == "" {
			reason = "no path to it yet"
		}
		return nil, fmt.Errorf("peer %d (%s) did not answer within 3 s: %s", p.Index, pairing.DisplayName(p.Name), reason)
	}
	return &control.PingResult{PeerRef: control.PeerRef{Index: p.Index, Name: p.Name}, RTT: control.Duration(rtt), Path: string(st.Path), Endpoint: st.Endpoint}, nil
}

// localLines are the lines this node serves, as peers are told.
func (nd *node) localLines() []int {
	lines := append(slices.Clone(nd.cfg.Load().Lines), nd.sup.Lines()...)
	slices.Sort(lines)
	return slices.Compact(lines)
}
func (nd *node) handlers() map[string]control.Handler {
	h := nd.manageHandlers()
	maps.Copy(h, nd.callHandlers())
	return h
}

func (nd *node) manageHandlers() map[string]control.Handler {
	return map[string]control.Handler{
		control.CmdStatus: func(ctx context.Context, _ json.RawMessage) (any, error) {
			return nd.status(ctx)
		},
		control.CmdPhones: func(ctx context.Context, _ json.RawMessage) (any, error) {
			return nd.phones(ctx)
		},
		control.CmdLines: func(ctx context.Context, _ json.RawMessage) (any, error) {
			return nd.lines(ctx)
		},
		control.CmdTrunks: func(context.Context, json.RawMessage) (any, error) {
			return nd.trunkStatus(), nil
		},
		control.CmdInvite: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a control.InviteArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nd.pair.Invite(ctx, time.Duration(a.TTL))
		},
		control.CmdInvites: func(context.Context, json.RawMessage) (any, error) {
			now := time.Now()
			out := []control.InviteEntry{}
			for _, e := range nd.pair.Store().List(now) {
				ie := control.InviteEntry{ID: e.ID, Created: e.Created, Expires: e.Expires, State: e.State(now).String()}
				if !e.Joiner.IsZero() {
					ie.Joiner = e.Joiner.String()
				}
				out = append(out, ie)
			}
			return out, nil
		},
		control.CmdRevokeInvite: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.RevokeInviteArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nil, nd.pair.Revoke(a.ID)
		},
		control.CmdJoin: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a control.JoinArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nd.pair.Join(ctx, a.Code)
		},
		control.CmdRemove: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.PeerArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nd.pair.Remove(a.Peer)
		},
		control.CmdPing: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a control.PeerArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nd.ping(ctx, a.Peer)
		},
		control.CmdRename: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.RenameArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nd.rename(a)
		},
		control.CmdLabelLine: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.LabelLineArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nil, nd.labelLine(a)
		},
		control.CmdLogs: func(context.Context, json.RawMessage) (any, error) {
			return nd.logs(), nil
		},
		control.CmdJoinStart: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.JoinArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			if strings.TrimSpace(a.Code) == "" {
				return nil, errors.New("no code: paste the code your friend sent you")
			}
			// A typo is reported at once, on the form that holds the
			// code; everything after needs the network and is followed
			// on the progress page.
			if _, err := invite.Parse(a.Code); err != nil {
				return nil, err
			}
			return nd.startJoin(a.Code, false), nil
		},
		control.CmdJoinProgress: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.JoinProgressArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			p, ok := nd.joins.get(a.ID)
			if !ok {
				return nil, errors.New("no such join here (peerlined may have restarted since): start it again")
			}
			return p, nil
		},
		control.CmdDiagnostics: func(ctx context.Context, _ json.RawMessage) (any, error) {
			return nd.diagnostics(ctx)
		},
		control.CmdSettings: func(context.Context, json.RawMessage) (any, error) {
			return nd.settings(), nil
		},
		control.CmdSetSettings: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a control.SettingsArgs
			if err := decodeArgs(raw, &a); err != nil {
				return nil, err
			}
			return nd.setSettings(a)
		},
		control.CmdForgetPhone: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a control.ForgetPhoneArgs
			if err := json.Unmarshal(raw, &a); err != nil {
				return nil, fmt.Errorf("forget: %w", err)
			}
			if nd.dhcp == nil {
				return nil, errors.New(`phones get lines by DHCP only with "phones": {"dhcp": true} in the config; lines in "lines" are removed by editing the config`)
			}
			if err := nd.dhcp.Forget(ctx, a.Line); err != nil {
				if errors.Is(err, dhcpd.ErrNoPhone) {
					return nil, fmt.Errorf("line %d has no phone; `peerline phones` lists the lines in use", a.Line)
				}
				return nil, err
			}
			// The forgotten phone knew the line's SIP password: the line's
			// next phone gets a new one, and the old binding goes.
			if nd.sip != nil {
				if err := nd.sip.forget(a.Line); err != nil {
					return nil, err
				}
			}
			return nil, nil
		},
	}
}

func (nd *node) status(ctx context.Context) (*control.Status, error) {
	st, err := nd.sup.Status(ctx)
	if err != nil {
		return nil, err
	}
	cfg := nd.cfg.Load()
	out := &control.Status{
		Name:        st.Name,
		Version:     nd.version,
		PublicKey:   st.PublicKey,
		Ready:       st.Ready,
		Lines:       st.Lines,
		ActiveLines: st.ActiveLines,
		Rendezvous:  rendezvousAddrs(cfg.Rendezvous),
		NATClass:    st.NATClass,
		Started:     nd.started,
		Peers:       []control.Peer{},
	}
	if b, err := os.ReadFile(nd.bootErrorFile); err == nil {
		out.BootConfigError = strings.TrimSpace(string(b))
	}
	out.BootJoin = nd.bootJoin()
	out.ConsolePasswordSet = nd.passwordSet()
	for _, p := range st.Peers {
		cp := control.Peer{
			Index:         p.Index,
			Name:          p.Name,
			Up:            p.Up,
			Error:         p.Error,
			Endpoint:      p.Endpoint,
			MTU:           p.MTU,
			LastHandshake: p.LastHandshake,
			RxBytes:       p.RxBytes,
			TxBytes:       p.TxBytes,
			Rewrite:       rewriteCounters(p),
		}
		// A recent handshake counts while the path manager has not heard
		// from the peer yet, not against its word that the peer shut down
		// or went silent.
		cp.Online = p.Up && (p.Online || !p.Gone && p.LastHandshake != nil && time.Since(*p.LastHandshake) < onlineWithin)
		cp.Path, cp.PathReason, cp.NATClass = p.Path, p.PathReason, p.NAT
		if p.RTT > 0 {
			d := control.Duration(p.RTT)
			cp.RTT = &d
		}
		out.Peers = append(out.Peers, cp)
	}
	return out, nil
}

func rendezvousAddrs(rs []config.Rendezvous) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.Address)
	}
	return out
}

func (nd *node) phones(ctx context.Context) ([]control.Phone, error) {
	if nd.dhcp == nil {
		return []control.Phone{}, nil
	}
	ps, err := nd.dhcp.Phones(ctx)
	if err != nil {
		return nil, err
	}
	st, err := nd.sup.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]control.Phone, 0, len(ps))
	for _, p := range ps {
		out = append(out, control.Phone{
			Line: p.Line, MAC: p.MAC, Vendor: p.Vendor, Model: p.Model, Hostname: p.Hostname,
			UserAgent: p.UserAgent, Addr: p.Addr, Bound: p.Bound, LastSeen: p.LastSeen,
			InCall: slices.Contains(st.ActiveLines, p.Line),
			Label:  nd.cfg.Load().LineLabels[p.Line],
		})
	}
	return out, nil
}

// snapshot is what the status page shows: the node and its phones.
func (nd *node) snapshot(ctx context.Context) (statuspage.Snapshot, error) {
	st, err := nd.status(ctx)
	if err != nil {
		return statuspage.Snapshot{}, err
	}
	ph, err := nd.phones(ctx)
	if err != nil {
		return statuspage.Snapshot{}, err
	}
	snap := statuspage.Snapshot{Status: *st, Phones: ph}
	if nd.sip != nil {
		ls, err := nd.lines(ctx)
		if err != nil {
			return statuspage.Snapshot{}, err
		}
		// The page is open to the phone port: no registration details.
		for k := range ls.Lines {
			if r := ls.Lines[k].Registration; r != nil {
				ls.Lines[k].Registration = &control.Registration{Expires: r.Expires}
			}
		}
		ls.Decisions = nil
		snap.SIP = &ls
	}
	// Nor the trunks' accounts and addresses: what to dial and whether
	// it works.
	for _, tr := range nd.trunkStatus().Trunks {
		snap.Trunks = append(snap.Trunks, control.Trunk{Name: tr.Name, Prefix: tr.Prefix, Lines: tr.Lines, State: tr.State, Status: tr.Status, Calls: tr.Calls})
	}
	return snap, nil
}

// directory is what the phones are told: this node's lines and every
// paired peer's, read fresh per request so pairing and renaming show at
// the phones' next fetch.
func (nd *node) directory(ctx context.Context) (provision.Directory, error) {
	cfg := nd.cfg.Load()
	st, err := nd.sup.Status(ctx)
	if err != nil {
		return provision.Directory{}, err
	}
	d := provision.Directory{NodeName: cfg.Name, TimeZone: cfg.Phones.TimeZone}
	if nd.sip != nil {
		d.Password = nd.sipPassword
	}
	for _, l := range st.Lines {
		d.Lines = append(d.Lines, provision.Line{Line: l, Label: cfg.LineLabels[l]})
	}
	for _, p := range cfg.Peers {
		d.Peers = append(d.Peers, provision.Peer{Index: p.Index, Name: p.Name, Lines: p.Lines, LineLabels: p.LineLabels})
	}
	return d, nil
}
