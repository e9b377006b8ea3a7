package pairing

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/peerline/peerline/pkg/invite"
)

// TestInvite: `peerline invite` gives the short code when a server stored
// the invite's blob, and the long one, saying why, when none did; the
// short code pairs, and the blob leaves the server once the invite is
// used or revoked.
func TestInvite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t)
		a, b := newNode(t, n, "A"), newNode(t, n, "B")
		defer func() { a.kill(); b.kill() }()
		blobs := func() int {
			n.mu.Lock()
			defer n.mu.Unlock()
			return len(n.blobs)
		}

		setPutFails := func(v bool) {
			n.mu.Lock()
			n.putFails = v
			n.mu.Unlock()
		}
		setPutFails(true)
		res, err := a.pr().Invite(context.Background(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if res.Code != res.LongCode || !strings.Contains(res.Note, "no server answered") || blobs() != 0 {
			t.Errorf("no server stores it: code %q (long %q), note %q, %d blobs; want the long code and why", res.Code, res.LongCode, res.Note, blobs())
		}
		if iv, err := invite.Parse(res.Code); err != nil || iv.Short() {
			t.Errorf("the long code parses to %+v, %v", iv, err)
		}

		setPutFails(false)
		revoked, err := a.pr().Invite(context.Background(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if iv, err := invite.Parse(revoked.Code); err != nil || !iv.Short() || revoked.Note != "" || blobs() != 1 {
			t.Fatalf("a server stores it: code %q parses to %+v, %v; note %q, %d blobs; want a short code", revoked.Code, iv, err, revoked.Note, blobs())
		}
		if err := a.pr().Revoke(revoked.ID); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if blobs() != 0 {
			t.Error("a revoked invite's blob stays on the server")
		}

		res, err = a.pr().Invite(context.Background(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if r := <-startJoin(b, res.Code); r.err != nil {
			t.Fatalf("join with the short code: %v", r.err)
		}
		if !settled(t, a, b) {
			t.Fatal("the short code did not pair")
		}
		if blobs() != 0 {
			t.Error("a used invite's blob stays on the server")
		}
	})
}
