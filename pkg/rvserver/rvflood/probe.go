package rvflood

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/rvclient"
)

// Probe is a pair of legitimate nodes, paired with each other, that
// measure what a flood does to everyone else: each round, A refreshes its
// registration, asks to be introduced to B (B answers, both get a punch
// with a relay session), and sends a packet through the relay to B; if
// Fetch is set, A also stores an invite and B fetches it, as pairing does.
type Probe struct {
	A, B *rvclient.Client
	// Fetch gets an invite blob as a joiner would (rvclient.GetInvite,
	// run where B's network is); nil leaves invites out.
	Fetch func(ctx context.Context, id [rendezvous.InviteIDLen]byte) ([]byte, error)
	got   chan string // relay payloads B received
}

// NewProbe makes the two clients on pcA and pcB (already bound, in the
// lab: inside their hosts' namespaces) and starts them; they stop when ctx
// is done. errc gets each client's Run error (nil on a clean stop).
func NewProbe(ctx context.Context, pcA, pcB net.PacketConn, srv rvclient.Server, log *slog.Logger) (*Probe, <-chan error, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Probe{got: make(chan string, 64)}
	ka, _ := nodekey.Generate()
	kb, _ := nodekey.Generate()
	var err error
	p.A, err = rvclient.New(pcA, ka, srv, rvclient.Options{
		Accept: func(k nodekey.Key, _ []byte) bool { return k == kb.Public() },
		Log:    log.With("probe", "A"),
	})
	if err != nil {
		return nil, nil, err
	}
	p.B, err = rvclient.New(pcB, kb, srv, rvclient.Options{
		Accept: func(k nodekey.Key, _ []byte) bool { return k == ka.Public() },
		Log:    log.With("probe", "B"),
		OnRelay: func(_ uint64, b []byte) {
			select {
			case p.got <- string(b):
			default:
			}
		},
	})
	if err != nil {
		return nil, nil, err
	}
	errc := make(chan error, 2)
	go func() { errc <- p.A.Run(ctx) }()
	go func() { errc <- p.B.Run(ctx) }()
	return p, errc, nil
}

// Op kinds measured by a probe round.
const (
	OpRegister  = "register"
	OpIntroduce = "introduce"
	OpRelay     = "relay"
	OpInvite    = "invite"
)

// ProbeResult is what the probe saw: per kind of operation, how many were
// tried, how many succeeded within the timeout, and their latencies.
type ProbeResult struct {
	Ops map[string]*OpStats `json:"ops"`
}

// OpStats summarises one kind of operation.
type OpStats struct {
	Tries     int       `json:"tries"`
	OK        int       `json:"ok"`
	Latencies []float64 `json:"-"` // ms, of the successful ones
	P50, P95  float64   `json:"-"`
	Max       float64   `json:"-"`
	Errors    []string  `json:"errors,omitempty"` // the first few
}

// Totals are the success rate and latency p95 over every operation.
func (r ProbeResult) Totals() (tries, ok int, p95ms float64) {
	var all []float64
	for _, s := range r.Ops {
		tries += s.Tries
		ok += s.OK
		all = append(all, s.Latencies...)
	}
	return tries, ok, Percentile(all, 0.95)
}

// Run does a round every interval until ctx is done, each operation
// bounded by timeout.
func (p *Probe) Run(ctx context.Context, every, timeout time.Duration) ProbeResult {
	r := ProbeResult{Ops: map[string]*OpStats{OpRegister: {}, OpIntroduce: {}, OpRelay: {}}}
	if p.Fetch != nil {
		r.Ops[OpInvite] = &OpStats{}
	}
	var mu sync.Mutex
	record := func(kind string, start time.Time, err error) {
		mu.Lock()
		defer mu.Unlock()
		s := r.Ops[kind]
		s.Tries++
		if err != nil {
			if len(s.Errors) < 5 {
				s.Errors = append(s.Errors, err.Error())
			}
			return
		}
		s.OK++
		s.Latencies = append(s.Latencies, float64(time.Since(start).Microseconds())/1000)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			for _, s := range r.Ops {
				s.P50, s.P95 = Percentile(s.Latencies, 0.5), Percentile(s.Latencies, 0.95)
				if len(s.Latencies) > 0 {
					s.Max = slices.Max(s.Latencies)
				}
			}
			return r
		case <-t.C:
		}
		// A round that the end of ctx cuts short is not counted: the
		// operation was not given its time.
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		start := time.Now()
		_, err := p.A.Register(octx, 0)
		record(OpRegister, start, err)
		start = time.Now()
		in, err := p.A.Connect(octx, p.B.PublicKey())
		record(OpIntroduce, start, err)
		if err == nil {
			payload := fmt.Sprintf("probe %d", seq)
			start = time.Now()
			record(OpRelay, start, p.relay(octx, in.Session, payload))
		}
		if p.Fetch != nil {
			start = time.Now()
			record(OpInvite, start, p.invite(octx, seq))
		}
		cancel()
	}
}

// invite stores a blob as A and fetches it as B.
func (p *Probe) invite(ctx context.Context, seq int) error {
	var id [rendezvous.InviteIDLen]byte
	rand.Read(id[:])
	blob := fmt.Appendf(nil, "probe invite %d", seq)
	if err := p.A.PutInvite(ctx, id, time.Now().Add(time.Minute), blob); err != nil {
		return err
	}
	got, err := p.Fetch(ctx, id)
	if err != nil {
		return err
	}
	if string(got) != string(blob) {
		return fmt.Errorf("invite fetched %q, stored %q", got, blob)
	}
	// Withdraw it, as a used invite is: the probe must not fill the
	// table it measures.
	return p.A.PutInvite(ctx, id, time.Time{}, nil)
}

// relay sends payload through the relay until B has it (a lost packet is
// sent again every 250 ms, as WireGuard would retry).
func (p *Probe) relay(ctx context.Context, session uint64, payload string) error {
	for {
		if err := p.A.SendRelay(session, []byte(payload)); err != nil {
			return err
		}
		t := time.NewTimer(250 * time.Millisecond)
	wait:
		for {
			select {
			case got := <-p.got:
				if got == payload {
					t.Stop()
					return nil
				}
			case <-t.C:
				break wait
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("relay: %q did not reach B: %w", payload, ctx.Err())
			}
		}
	}
}

// Percentile is the p-th (0..1) of xs by nearest rank; NaN for none.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
