package wgtunnel

import (
	"fmt"

	"golang.zx2c4.com/wireguard/device"
)

// Rehandshake sends a new handshake initiation to the peer now, whatever
// the state of the current session: the path manager's repair for a
// session that carries nothing back while the path itself answers (one
// side lost the keys, as after initiations that crossed). wireguard-go
// skips it within 5 s (RekeyTimeout) of its last initiation.
//
// A parked device has no session to repair: its next packet wakes it with
// a fresh handshake.
func (t *Tunnel) Rehandshake() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dev == nil {
		return nil
	}
	p := t.dev.LookupPeer(device.NoisePublicKey(t.peer))
	if p == nil {
		return fmt.Errorf("device %s has no peer %s", t.name, t.peer)
	}
	if err := p.SendHandshakeInitiation(false); err != nil {
		return fmt.Errorf("starting a handshake on %s: %w", t.name, err)
	}
	return nil
}
