package peerpath

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
)

// PutInvite stores an invite blob (or, with an empty blob, deletes it) on
// every rendezvous server this node has reached, all at once, within
// within. It returns as soon as one server has stored it, with that
// server's key; the others go on in the background, so that a server that
// is down costs the person waiting for a code nothing. If none stores it,
// it returns why.
func (m *Manager) PutInvite(ctx context.Context, id [rendezvous.InviteIDLen]byte, expires time.Time, blob []byte, within time.Duration) (nodekey.Key, error) {
	m.clientsMu.RLock()
	clients := m.clients
	keys := make([]nodekey.Key, len(clients))
	for i, c := range clients {
		keys[i] = m.serverKeys[c]
	}
	m.clientsMu.RUnlock()
	if len(clients) == 0 {
		return nodekey.Key{}, errors.New("no rendezvous server has been reached yet")
	}
	type result struct {
		key nodekey.Key
		err error
	}
	// Buffered for all: the puts outlive this call.
	results := make(chan result, len(clients))
	putCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), within)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			results <- result{keys[i], c.PutInvite(putCtx, id, expires, blob)}
		})
	}
	go func() {
		wg.Wait()
		cancel()
	}()
	var errs []error
	for range clients {
		select {
		case r := <-results:
			if r.err == nil {
				return r.key, nil
			}
			errs = append(errs, r.err)
		case <-ctx.Done():
			return nodekey.Key{}, ctx.Err()
		}
	}
	return nodekey.Key{}, errors.Join(errs...)
}
