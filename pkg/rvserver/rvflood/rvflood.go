// Package rvflood floods a rendezvous server (pkg/rvserver) the way issue 13's
// review did: authenticated requests with valid cookies, from many node
// keys and several source addresses, registering, asking for introductions
// to random keys (the pending table) and introducing flood keys to each
// other (relay sessions). It is the attacker of the lab's attack test and of
// make bench-attack, and is always bounded in packets and in time.
//
// It only sends to the one server address it is given, from sockets the
// caller opened (in the lab: inside the attacker's namespaces).
package rvflood

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
)

// Options shape a flood. Conns, Keys and a bound are required.
type Options struct {
	// Server is the rendezvous server's main address and ServerKey its
	// public key.
	Server    netip.AddrPort
	ServerKey nodekey.Key
	// Conns are the flood's sockets, one per source address; the keys are
	// spread over them in turn.
	Conns []net.PacketConn
	// Keys is how many node keys flood. Key k is introduced to key k XOR d
	// for d = 1, 2, ... in turn, so a power of two pairs every key.
	Keys int
	// Rate is the packets per second aimed at, in total (0: 10,000).
	Rate int
	// MaxPackets and Duration bound the flood; it stops at whichever comes
	// first (or when ctx is done). Both must be set.
	MaxPackets int
	Duration   time.Duration
}

// Result is what the flood sent and what came back.
type Result struct {
	Sent, SendErrors int
	// Cookies are Cookie messages received; Replies sealed answers by
	// type (register-reply, connect-reply, and the incoming and punch pushes), by rendezvous.Type.String.
	Cookies int
	Replies map[string]int
	Elapsed time.Duration
}

type floodKey struct {
	pub  nodekey.Key
	aead cipher.AEAD
	conn int
}

type conn struct {
	pc     net.PacketConn
	cookie atomic.Pointer[[rendezvous.CookieLen]byte]
}

// Run floods until a bound is reached and returns what it did.
func Run(ctx context.Context, o Options) (Result, error) {
	if len(o.Conns) == 0 || o.Keys < 1 || o.MaxPackets < 1 || o.Duration <= 0 {
		return Result{}, errors.New("rvflood: give sockets, keys, a packet bound and a duration")
	}
	if o.Rate <= 0 {
		o.Rate = 10000
	}
	keys := make([]floodKey, o.Keys)
	for i := range keys {
		k, err := nodekey.Generate()
		if err != nil {
			return Result{}, err
		}
		a, err := rendezvous.NodeAEAD(k, o.ServerKey)
		if err != nil {
			return Result{}, err
		}
		keys[i] = floodKey{pub: k.Public(), aead: a, conn: i % len(o.Conns)}
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	start := time.Now()
	conns := make([]*conn, len(o.Conns))
	var mu sync.Mutex
	res := Result{Replies: map[string]int{}}
	var wg sync.WaitGroup
	for i, pc := range o.Conns {
		c := &conn{pc: pc}
		c.cookie.Store(&[rendezvous.CookieLen]byte{})
		conns[i] = c
		wg.Go(func() { c.read(ctx, o.Server, &mu, &res) })
	}
	sent, errs := flood(ctx, o, keys, conns)
	cancel()
	for _, c := range conns {
		c.pc.SetReadDeadline(time.Now()) // ends the readers
	}
	wg.Wait()
	res.Sent, res.SendErrors, res.Elapsed = sent, errs, time.Since(start)
	return res, nil
}

// flood sends until a bound is reached.
func flood(ctx context.Context, o Options, keys []floodKey, conns []*conn) (sent, errs int) {
	dst := net.UDPAddrFromAddrPort(o.Server)
	buf := make([]byte, 0, rendezvous.MaxPacket)
	send := func(k floodKey, m rendezvous.Message) bool {
		c := conns[k.conn]
		b, err := rendezvous.Seal(buf[:0], k.aead, k.pub, *c.cookie.Load(), time.Now(), m, rendezvous.MinRequestLen)
		if err != nil {
			return false
		}
		if _, err := c.pc.WriteTo(b, dst); err != nil {
			errs++
		}
		sent++
		return sent < o.MaxPackets && ctx.Err() == nil
	}
	// A cookie for each source address first: the server answers a
	// request without one with a Cookie, bound to the address.
	for range 20 {
		missing := false
		for i, c := range conns {
			if *c.cookie.Load() == ([rendezvous.CookieLen]byte{}) {
				missing = true
				if !send(keys[i%len(keys)], rendezvous.Register{}) {
					return sent, errs
				}
			}
		}
		if !missing {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Then, in rounds over every key: register, a Connect to a random key
	// (waits in the pending table), a Connect to its partner of the round
	// (the partner asks back in the same round: a relay session).
	perTick := max(1, o.Rate/1000)
	budget := 0
	next := time.Now()
	box := make([]byte, 64)
	for round := 0; ; round++ {
		d := 1 + round%max(1, o.Keys-1)
		for i, k := range keys {
			var m rendezvous.Message
			switch round % 3 {
			case 0:
				m = rendezvous.Register{}
			case 1:
				var target nodekey.Key
				copy(target[:], fmt.Appendf(nil, "rvflood %d %d", round, i))
				m = rendezvous.Connect{Target: target, Box: box}
			case 2:
				m = rendezvous.Connect{Target: keys[(i^d)%len(keys)].pub, Box: box}
			}
			if budget == 0 {
				next = next.Add(time.Millisecond)
				if wait := time.Until(next); wait > 0 {
					time.Sleep(wait)
				} else if wait < -time.Second {
					next = time.Now() // fell far behind: do not burst to catch up
				}
				budget = perTick
			}
			budget--
			if !send(k, m) {
				return sent, errs
			}
		}
	}
}

// read counts what the server sends back on one socket and keeps the
// socket's cookie current.
func (c *conn) read(ctx context.Context, server netip.AddrPort, mu *sync.Mutex, res *Result) {
	buf := make([]byte, rendezvous.MaxPacket+1)
	for ctx.Err() == nil {
		c.pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, err := c.pc.ReadFrom(buf)
		if err != nil {
			continue
		}
		if ua, ok := from.(*net.UDPAddr); !ok || ua.AddrPort().Addr().Unmap() != server.Addr() {
			continue
		}
		b := buf[:n]
		t, err := rendezvous.ParseHeader(b)
		if err != nil {
			continue
		}
		if t == rendezvous.TypeCookie {
			if m, err := rendezvous.ParseCookie(b); err == nil {
				ck := m.Cookie
				c.cookie.Store(&ck)
				mu.Lock()
				res.Cookies++
				mu.Unlock()
			}
			continue
		}
		mu.Lock()
		res.Replies[t.String()]++
		mu.Unlock()
	}
}
