package rvclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/peerline/peerline/pkg/rendezvous"
)

// Invite errors.
var (
	ErrInviteRefused = errors.New("rendezvous server refused to store the invite: its id belongs to another node, it has expired, or the server holds too many invites; make a new invite")
	ErrInviteUnknown = errors.New("rendezvous server does not know this invite: it expired, was withdrawn or used, or the server restarted; ask for a new invite code")
)

// PutInvite stores blob under id on the server until expires (the server
// keeps it at most rendezvous.MaxInviteTTL), or with an empty blob deletes
// it. It goes to the server's main port, with the usual retries and cookie
// handling, until ctx ends. The server refuses with ErrInviteRefused.
func (c *Client) PutInvite(ctx context.Context, id [rendezvous.InviteIDLen]byte, expires time.Time, blob []byte) error {
	if len(blob) > rendezvous.MaxInviteBlob {
		return fmt.Errorf("invite blob of %d bytes is longer than the %d a rendezvous server stores", len(blob), rendezvous.MaxInviteBlob)
	}
	if len(blob) == 0 {
		expires = time.Time{}
	}
	r, err := c.request(ctx, 0, rendezvous.InvitePut{ID: id, Expires: expires, Blob: blob})
	if err != nil {
		return err
	}
	pr, ok := r.(rendezvous.InvitePutReply)
	if !ok || pr.ID != id {
		return fmt.Errorf("rendezvous server answered invite put with %s", r.Type())
	}
	if !pr.Stored {
		return ErrInviteRefused
	}
	return nil
}

// getInviteTries and getInviteWait are GetInvite's retransmissions: 250 ms,
// then doubling, about 4 s in all.
const (
	getInviteTries = 4
	getInviteWait  = 250 * time.Millisecond
)

// GetInvite asks server (its main port) for the invite blob stored under
// id. It uses a UDP socket of its own, so the caller need not be registered
// with that server or have any key: the request is not sealed (the blob
// is). It tries up to four times, waiting 250 ms and then twice as long
// each time, within ctx. ErrInviteUnknown means the server answered that it
// has no such blob; an error wrapping ErrNoReply that it never answered.
// join, if not empty, is a join box (pkg/invite) the server passes on to
// the blob's owner, so that pairing starts in this same round trip.
func GetInvite(ctx context.Context, server netip.AddrPort, id [rendezvous.InviteIDLen]byte, join []byte) ([]byte, error) {
	server = unmap(server)
	if !server.IsValid() {
		return nil, fmt.Errorf("no rendezvous server address to fetch the invite from")
	}
	// A connected socket: the kernel drops datagrams from anyone but the
	// server, so only the server (or someone on its path) can answer.
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
	if err != nil {
		return nil, fmt.Errorf("opening a socket to rendezvous server %s: %w", server, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()

	req := rendezvous.AppendInviteGet(nil, id, join)
	buf := make([]byte, rendezvous.MaxPacket+1)
	wait := getInviteWait
	var lastErr error
	for range getInviteTries {
		if _, err := conn.Write(req); err != nil {
			lastErr = err
		}
		deadline := time.Now().Add(wait)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		if ctx.Err() == nil {
			conn.SetReadDeadline(deadline)
		}
		for ctx.Err() == nil {
			n, err := conn.Read(buf)
			if err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					// For example ICMP port unreachable while the
					// server restarts: wait out this try, then ask
					// again.
					lastErr = err
					sleep(ctx, time.Until(deadline))
				}
				break
			}
			gotID, blob, err := rendezvous.ParseInvite(buf[:n])
			if err != nil || gotID != id {
				continue // junk, or a late answer to another id
			}
			if blob == nil {
				return nil, ErrInviteUnknown
			}
			return append([]byte(nil), blob...), nil
		}
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			// The read timed out at ctx's deadline, maybe a moment
			// before ctx noticed: report it as ctx's end.
			<-ctx.Done()
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%s, invite): %w", ErrNoReply, server, ctx.Err())
		}
		wait *= 2
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w (%s, invite): %w", ErrNoReply, server, lastErr)
	}
	return nil, fmt.Errorf("%w (%s, invite)", ErrNoReply, server)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
