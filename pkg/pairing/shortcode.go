package pairing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/invite"
)

// Short codes. A version-2 code holds one rendezvous server's address, the
// expiry and the secret; the rest of the invite (this node's key and name,
// every server with its key) is a blob sealed with a key derived from the
// secret, stored on the servers under an ID derived from it (package
// invite). The servers learn nothing from it and cannot forge it; the
// joiner fetches it from the server the code names and opens it
// (fetchInvite). If no server takes the blob, the invite is given in its
// long form, which needs nothing stored anywhere.

// storeWait bounds storing a new invite's blob on the servers.
const storeWait = 5 * time.Second

// Invite makes an invite and returns its short code, or its long one when
// no server the short code could name has stored the blob.
func (pr *Pairing) Invite(ctx context.Context, ttl time.Duration) (control.InviteResult, error) {
	iv, err := pr.Create(ttl)
	if err != nil {
		return control.InviteResult{}, err
	}
	res := control.InviteResult{Code: iv.Code(), URI: iv.URI(), ID: iv.ID(), Expires: iv.Expires, LongCode: iv.Code(), LongURI: iv.URI()}
	short, err := pr.storeInvite(ctx, &iv)
	if !short {
		pr.log.Warn("no rendezvous server stored the invite; giving the long code", "invite", iv.ID(), "err", err)
		res.Note = fmt.Sprintf("this is the long form of the code: no rendezvous server took the short form (%v)", err)
		return res, nil
	}
	res.Code, res.URI = iv.ShortCode(), iv.ShortURI()
	return res, nil
}

// storeInvite seals iv's blob and stores it on every server; it reports
// whether a server that stored it now comes first in iv.Servers, the one
// the short code names.
func (pr *Pairing) storeInvite(ctx context.Context, iv *invite.Invite) (bool, error) {
	if pr.opt.PutInvite == nil {
		return false, errors.New("this node stores no invites on servers")
	}
	blob, err := invite.SealBlob(*iv)
	if err != nil {
		return false, err
	}
	stored, err := pr.opt.PutInvite(ctx, invite.BlobID(iv.Secret), iv.Expires, blob, storeWait)
	if err != nil {
		return false, err
	}
	for i, s := range iv.Servers {
		if s.Key == stored {
			// The blob lists every server, so naming another one
			// first changes nothing it says.
			iv.Servers[0], iv.Servers[i] = iv.Servers[i], iv.Servers[0]
			return true, nil
		}
	}
	return false, errors.New("the server that stored it is not among the invite's servers")
}

// Revoke withdraws the pending invite id (Store.Revoke) and deletes its
// short form from the servers.
func (pr *Pairing) Revoke(id string) error {
	if err := pr.store.Revoke(time.Now(), id); err != nil {
		return err
	}
	if blob, ok := pr.store.BlobID(id); ok {
		pr.forgetInvite(blob)
	}
	return nil
}

// forgetInvite deletes an invite's blob from the servers, in the
// background: it is tidiness (the servers drop it at its expiry anyway), and
// what makes a used or revoked short code fail at once for a third Pi.
func (pr *Pairing) forgetInvite(blobID [16]byte) {
	if pr.opt.PutInvite == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), storeWait)
		defer cancel()
		if _, err := pr.opt.PutInvite(ctx, blobID, time.Time{}, nil, storeWait); err != nil {
			pr.log.Debug("deleting an invite's short form from the servers", "err", err)
		}
	}()
}
