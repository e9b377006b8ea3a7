package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/invite"
	"github.com/peerline/peerline/pkg/nodekey"
)

// Short codes. A version-2 code holds one rendezvous server's address, the
// expiry and the secret; the rest of the invite (this node's key and name,
// every server with its key) is a blob sealed with a key derived from the
// secret, stored on the servers under an ID derived from it (package
// invite). The servers learn nothing from it and cannot forge it; the
// joiner fetches it from the server the code names and opens it. If no
// server takes the blob, the invite is printed in its long form, which
// needs nothing stored anywhere.

// storeWait bounds storing a new invite's blob on the servers.
const storeWait = 5 * time.Second

// invite makes an invite and returns its short code, or its long one when
// no server the short code could name has stored the blob.
func (nd *node) invite(ctx context.Context, ttl time.Duration) (control.InviteResult, error) {
	iv, err := nd.pair.Create(ttl)
	if err != nil {
		return control.InviteResult{}, err
	}
	res := control.InviteResult{Code: iv.Code(), URI: iv.URI(), ID: iv.ID(), Expires: iv.Expires, LongCode: iv.Code(), LongURI: iv.URI()}
	short, err := nd.storeInvite(ctx, &iv)
	if !short {
		nd.log.Warn("no rendezvous server stored the invite; giving the long code", "invite", iv.ID(), "err", err)
		res.Note = fmt.Sprintf("this is the long form of the code: no rendezvous server took the short form (%v)", err)
		return res, nil
	}
	res.Code, res.URI = iv.ShortCode(), iv.ShortURI()
	return res, nil
}

// storeInvite seals iv's blob and stores it on every server; it reports
// whether a server that stored it now comes first in iv.Servers, the one
// the short code names.
func (nd *node) storeInvite(ctx context.Context, iv *invite.Invite) (bool, error) {
	blob, err := invite.SealBlob(*iv)
	if err != nil {
		return false, err
	}
	paths, err := nd.pathManager(ctx)
	if err != nil {
		return false, err
	}
	stored, err := paths.PutInvite(ctx, invite.BlobID(iv.Secret), iv.Expires, blob, storeWait)
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

// forgetInvite deletes an invite's blob from the servers, in the
// background: it is tidiness (the servers drop it at its expiry anyway), and
// what makes a used or revoked short code fail at once for a third Pi.
func (nd *node) forgetInvite(blobID [16]byte) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), storeWait)
		defer cancel()
		paths, err := nd.pathManager(ctx)
		if err == nil {
			_, err = paths.PutInvite(ctx, blobID, time.Time{}, nil, storeWait)
		}
		if err != nil {
			nd.log.Debug("deleting an invite's short form from the servers", "err", err)
		}
	}()
}

// sendPair sends pairing data to a peer on its path (pkg/pairing).
func (nd *node) sendPair(ctx context.Context, peer nodekey.Key, data []byte) error {
	paths, err := nd.pathManager(ctx)
	if err != nil {
		return err
	}
	return paths.SendPair(ctx, peer, data)
}
