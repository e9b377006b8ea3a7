package peerlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/peerline/peerline/pkg/lab"
)

// Stream stands in for a call's media: one datagram every interval from
// one phone to the other, through the tunnel, with the receiver noting when
// each arrived, so that a test can see how long media stopped while the
// network changed under it.
type Stream struct {
	send, recv net.PacketConn
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	mu       sync.Mutex
	arrivals []time.Time
	sent     int // datagrams the sender wrote without error
}

// mediaEvery is a G.711 call's packet interval.
const mediaEvery = 20 * time.Millisecond

// streamPort is the UDP port the receiving phone listens on.
const streamPort = 40000

// StartStream sends from the phone host from to dst (the receiving phone as
// from's node numbers it), received by to on its own address.
func StartStream(ctx context.Context, from, to *lab.Host, toAddr, dst netip.Addr, every time.Duration) (*Stream, error) {
	recv, err := to.ListenPacket("udp4", netip.AddrPortFrom(toAddr, streamPort).String())
	if err != nil {
		return nil, err
	}
	send, err := from.ListenPacket("udp4", ":0")
	if err != nil {
		recv.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Stream{send: send, recv: recv, cancel: cancel}
	s.wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := recv.ReadFrom(buf); err != nil {
				return
			}
			s.mu.Lock()
			s.arrivals = append(s.arrivals, time.Now())
			s.mu.Unlock()
		}
	})
	s.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, streamPort))
		payload := make([]byte, 172) // a G.711 RTP packet's size
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := send.WriteTo(payload, to); err == nil {
					s.mu.Lock()
					s.sent++
					s.mu.Unlock()
				}
			}
		}
	})
	return s, nil
}

// Stop ends the stream.
func (s *Stream) Stop() {
	s.cancel()
	s.send.Close()
	s.recv.Close()
	s.wg.Wait()
}

// Sent is how many datagrams the sender has written.
func (s *Stream) Sent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

// Received is how many datagrams arrived since t.
func (s *Stream) Received(since time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.arrivals {
		if !a.Before(since) {
			n++
		}
	}
	return n
}

// First is when the first datagram arrived at or after since (zero if
// none did).
func (s *Stream) First(since time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.arrivals {
		if !a.Before(since) {
			return a
		}
	}
	return time.Time{}
}

// Gap is the longest time without a datagram from since until now or
// until the first arrival after which media flowed again, whichever is
// found: the media gap a change at since caused.
func (s *Stream) Gap(since time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := since
	var worst time.Duration
	for _, a := range s.arrivals {
		if a.Before(since) {
			continue
		}
		worst = max(worst, a.Sub(last))
		last = a
	}
	return max(worst, time.Since(last))
}

// WaitFlowing waits until n datagrams arrived after t, or fails after
// within.
func (s *Stream) WaitFlowing(ctx context.Context, t time.Time, n int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for s.Received(t) < n {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("media did not flow again within %v: %d datagrams arrived", within, s.Received(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
