package callstats

import (
	"context"
	"log/slog"
	"time"
)

// Source reads every peer's flows and round trip; the daemon's reads the
// supervisor (the rewriters' counters and the path manager's RTT).
type Source func(ctx context.Context) ([]Peer, error)

// Options configure Run.
type Options struct {
	Source Source
	// Interval is the sampling period (default 5 s): calls end within
	// EndAfter + Interval of their last packet.
	Interval time.Duration
	Log      *slog.Logger
}

// DefaultInterval is how often Run samples.
const DefaultInterval = 5 * time.Second

// Run samples opt.Source every interval into t until ctx is done; it
// returns nil then. A failing source is logged once per failure streak and
// retried at the next tick: the calls keep what they had.
func (t *Tracker) Run(ctx context.Context, opt Options) error {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	interval := opt.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	log.Debug("call statistics started", "interval", interval)
	defer log.Debug("call statistics stopped")
	tick := time.NewTicker(interval)
	defer tick.Stop()
	failing := false
	for {
		peers, err := opt.Source(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			if !failing {
				log.Warn("reading call statistics; retrying", "err", err)
			}
			failing = true
		default:
			failing = false
			t.Update(time.Now(), peers)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
