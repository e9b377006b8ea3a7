package rvclient_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/rvclient"
)

func TestInvitePutGet(t *testing.T) {
	srv := startServer(t)
	inviter := startClient(t, srv, nil)
	other := startClient(t, srv, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	id := [rendezvous.InviteIDLen]byte{0x42, 15: 1}
	blob := bytes.Repeat([]byte("sealed "), 50)[:rendezvous.MaxInviteBlob]

	if _, err := rvclient.GetInvite(ctx, srv.Addrs[0], id, nil); !errors.Is(err, rvclient.ErrInviteUnknown) {
		t.Fatalf("GetInvite before put = %v, want ErrInviteUnknown", err)
	}
	if err := inviter.c.PutInvite(ctx, id, time.Now().Add(time.Hour), blob); err != nil {
		t.Fatalf("PutInvite: %v", err)
	}
	got, err := rvclient.GetInvite(ctx, srv.Addrs[0], id, nil)
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("GetInvite = %d bytes, %v; want the %d-byte blob", len(got), err, len(blob))
	}
	if err := other.c.PutInvite(ctx, id, time.Now().Add(time.Hour), []byte("hijack")); !errors.Is(err, rvclient.ErrInviteRefused) {
		t.Errorf("another node's PutInvite on the same id = %v, want ErrInviteRefused", err)
	}
	if err := other.c.PutInvite(ctx, id, time.Time{}, nil); !errors.Is(err, rvclient.ErrInviteRefused) {
		t.Errorf("another node's delete = %v, want ErrInviteRefused", err)
	}
	if err := inviter.c.PutInvite(ctx, id, time.Time{}, nil); err != nil {
		t.Fatalf("PutInvite delete: %v", err)
	}
	if got, err := rvclient.GetInvite(ctx, srv.Addrs[0], id, nil); !errors.Is(err, rvclient.ErrInviteUnknown) {
		t.Errorf("GetInvite after delete = %q, %v; want ErrInviteUnknown", got, err)
	}
	if err := inviter.c.PutInvite(ctx, id, time.Now().Add(-time.Minute), blob); !errors.Is(err, rvclient.ErrInviteRefused) {
		t.Errorf("PutInvite with a past expiry = %v, want ErrInviteRefused", err)
	}
	if err := inviter.c.PutInvite(ctx, id, time.Now().Add(time.Hour), make([]byte, rendezvous.MaxInviteBlob+1)); err == nil {
		t.Error("PutInvite of an oversized blob succeeded")
	}
}

func TestGetInviteNoServer(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: bind one, note it, close it.
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	id := [rendezvous.InviteIDLen]byte{1}

	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 600*time.Millisecond)
	defer cancel()
	_, err = rvclient.GetInvite(ctx, dead, id, nil)
	if !errors.Is(err, rvclient.ErrNoReply) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GetInvite from a dead server = %v; want ErrNoReply and the deadline", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("GetInvite took %v with a 600 ms deadline", el)
	}

	// Without a deadline it gives up after its four tries (about 3.75 s).
	start = time.Now()
	_, err = rvclient.GetInvite(t.Context(), dead, id, nil)
	if el := time.Since(start); !errors.Is(err, rvclient.ErrNoReply) || el < 3*time.Second || el > 6*time.Second {
		t.Errorf("GetInvite without deadline = %v after %v; want ErrNoReply after about 3.75 s", err, el)
	}
}

// TestGetInviteIgnoresJunk: a server that answers with junk and with
// another id's answer before the real one still yields the blob.
func TestGetInviteIgnoresJunk(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	id := [rendezvous.InviteIDLen]byte{3}
	go func() {
		buf := make([]byte, 2000)
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if _, _, err := rendezvous.ParseInviteGet(buf[:n]); err != nil {
			return
		}
		pc.WriteToUDPAddrPort([]byte("junk"), from)
		pc.WriteToUDPAddrPort(rendezvous.AppendInvite(nil, [rendezvous.InviteIDLen]byte{4}, []byte("other")), from)
		pc.WriteToUDPAddrPort(rendezvous.AppendInvite(nil, id, []byte("mine")), from)
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	got, err := rvclient.GetInvite(ctx, pc.LocalAddr().(*net.UDPAddr).AddrPort(), id, nil)
	if err != nil || string(got) != "mine" {
		t.Errorf("GetInvite = %q, %v; want \"mine\"", got, err)
	}
}

// TestInviteJoinPush: a join box sent along with a fetch reaches the
// invite's owner (registered), and only for an invite that exists.
func TestInviteJoinPush(t *testing.T) {
	srv := startServer(t)
	inviter := startClient(t, srv, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := inviter.c.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	id := [rendezvous.InviteIDLen]byte{0x77}
	if err := inviter.c.PutInvite(ctx, id, time.Now().Add(time.Hour), []byte("blob")); err != nil {
		t.Fatal(err)
	}
	if _, err := rvclient.GetInvite(ctx, srv.Addrs[0], [rendezvous.InviteIDLen]byte{0x78}, []byte("stray box")); !errors.Is(err, rvclient.ErrInviteUnknown) {
		t.Fatalf("GetInvite of an unknown id = %v", err)
	}
	if got, err := rvclient.GetInvite(ctx, srv.Addrs[0], id, []byte("join box")); err != nil || string(got) != "blob" {
		t.Fatalf("GetInvite = %q, %v", got, err)
	}
	want := append(id[:len(id):len(id)], "join box"...)
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		inviter.mu.Lock()
		joins := slices.Clone(inviter.joins)
		inviter.mu.Unlock()
		if len(joins) > 0 {
			if len(joins) != 1 || !bytes.Equal(joins[0], want) {
				t.Fatalf("the inviter got join boxes %q, want only %q", joins, want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the join box never reached the invite's owner")
		}
	}
}
