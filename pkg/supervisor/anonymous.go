package supervisor

import "github.com/peerline/peerline/pkg/privacy"

// applyAnonymous gives each tunnel's rewriter the config's rule for
// anonymous calls from that peer (by its name, else the default): the
// rewriter enforces it (rewrite.Device.SetAnonymous), from the next call
// after a reload.
func (s *Supervisor) applyAnonymous() {
	for _, p := range s.peers {
		if p.rewrite != nil {
			r, _ := s.cfg.Anonymous.RuleFor(privacy.Source{Kind: privacy.FromPeer, Name: p.cfg.Name})
			p.rewrite.SetAnonymous(r)
		}
	}
}
