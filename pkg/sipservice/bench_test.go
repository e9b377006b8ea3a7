package sipservice

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/peerline/peerline/pkg/dialplan"
	"github.com/peerline/peerline/pkg/registrar"
	"github.com/peerline/peerline/pkg/sipauth"
)

// benchService runs a service on loopback with 200 line accounts and a
// peer, as make bench-sip measures it.
func benchService(b *testing.B) (string, int) {
	b.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// sipgo's clients log through the default logger; its warnings would
	// break the benchmark lines make bench-sip reads.
	slog.SetDefault(quiet)
	reg := registrar.New(sipauth.Config{Realm: "bench"}, func(user string) (int, string, bool) {
		n, err := strconv.Atoi(user)
		if err != nil || n < 1 || n > 200 {
			return 0, "", false
		}
		return n, "pw" + user, true
	}, quiet)
	svc := &Service{Registrar: reg, Log: quiet, Routes: func() (*dialplan.Plan, dialplan.Env) {
		return nil, dialplan.Env{Lines: 200, Peers: []dialplan.PeerInfo{{Index: 7, Name: "alice"}}}
	}}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = svc.Serve(ctx, conn); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	addr := conn.LocalAddr().(*net.UDPAddr)
	return addr.IP.String(), addr.Port
}

func benchClient(b *testing.B) *sipgo.Client {
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("bench-phone"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ua.Close() })
	cl, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		b.Fatal(err)
	}
	return cl
}

// BenchmarkRegister is one phone's full registration with digest: the
// REGISTER, its 401, and the authenticated REGISTER with its 200. Lines
// take turns so each answer has a fresh nonce, as phones' do.
func BenchmarkRegister(b *testing.B) {
	host, port := benchService(b)
	var next atomic.Int64
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		cl := benchClient(b)
		for pb.Next() {
			line := strconv.Itoa(int(next.Add(1)%200) + 1)
			req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: host, Port: port})
			req.AppendHeader(sip.NewHeader("To", "<sip:"+line+"@"+host+">"))
			req.AppendHeader(sip.NewHeader("From", "<sip:"+line+"@"+host+">;tag=b"+line))
			req.AppendHeader(sip.NewHeader("Contact", "<sip:"+line+"@127.0.0.1:5062>"))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, err := cl.Do(ctx, req)
			if err == nil && res.StatusCode == 401 {
				res, err = cl.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: line, Password: "pw" + line})
			}
			cancel()
			if err != nil || res.StatusCode != 200 {
				b.Errorf("register line %s: %v %v", line, res, err)
				return
			}
		}
	})
}

// BenchmarkRedirect is one call set-up through the service: an INVITE
// dialled by name, its 302, and the ACK. Its time per operation, next to
// a direct call, is what dialling by name adds.
func BenchmarkRedirect(b *testing.B) {
	host, port := benchService(b)
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		cl := benchClient(b)
		for pb.Next() {
			if !redirect(b, cl, host, port) {
				return
			}
		}
	})
}

// BenchmarkRedirectLatency is one caller alone: its time per operation is
// the round trip a name-dialled call adds before the direct INVITE.
func BenchmarkRedirectLatency(b *testing.B) {
	host, port := benchService(b)
	cl := benchClient(b)
	for b.Loop() {
		if !redirect(b, cl, host, port) {
			return
		}
	}
}

func redirect(b *testing.B, cl *sipgo.Client, host string, port int) bool {
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "alice.2", Host: host, Port: port})
	req.AppendHeader(sip.NewHeader("To", "<sip:alice.2@"+host+">"))
	req.AppendHeader(sip.NewHeader("From", "<sip:1@"+host+">;tag=c"))
	req.AppendHeader(sip.NewHeader("Contact", "<sip:1@127.0.0.1:5062>"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := cl.Do(ctx, req)
	if err != nil || res.StatusCode != 302 {
		b.Errorf("invite: %v %v", res, err)
		return false
	}
	return true
}
