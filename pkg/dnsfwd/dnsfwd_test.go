package dnsfwd

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// upstream is a resolver on loopback that knows one name.
func upstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if r.Question[0].Name == "pool.ntp.org." {
			rr, _ := dns.NewRR("pool.ntp.org. 60 IN A 192.0.2.123")
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// start runs a Server on loopback forwarding to ups, and returns its address.
func start(t *testing.T, ups ...string) string {
	t.Helper()
	var addr string
	ready := make(chan struct{})
	s, err := New(Options{Upstreams: ups, ListenPacket: func(string) (net.PacketConn, error) {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err == nil {
			addr = pc.LocalAddr().String()
		}
		close(ready)
		return pc, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-ready
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run() = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	time.Sleep(50 * time.Millisecond) // the server starts reading after Run opened the socket
	return addr
}

func query(t *testing.T, server string, m *dns.Msg) (*dns.Msg, error) {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, server)
	return r, err
}

func TestForward(t *testing.T) {
	srv := start(t, upstream(t))
	tests := []struct {
		name      string
		msg       func() *dns.Msg
		wantRcode int
		wantAns   int
	}{
		{"known name", func() *dns.Msg { return new(dns.Msg).SetQuestion("pool.ntp.org.", dns.TypeA) }, dns.RcodeSuccess, 1},
		{"unknown name", func() *dns.Msg { return new(dns.Msg).SetQuestion("nowhere.example.", dns.TypeA) }, dns.RcodeNameError, 0},
		{"not a query", func() *dns.Msg {
			m := new(dns.Msg).SetQuestion("pool.ntp.org.", dns.TypeA)
			m.Opcode = dns.OpcodeUpdate
			return m
		}, dns.RcodeNotImplemented, 0},
		{"two questions", func() *dns.Msg {
			m := new(dns.Msg).SetQuestion("pool.ntp.org.", dns.TypeA)
			m.Question = append(m.Question, m.Question[0])
			return m
		}, dns.RcodeFormatError, 0},
		{"ANY refused", func() *dns.Msg { return new(dns.Msg).SetQuestion("pool.ntp.org.", dns.TypeANY) }, dns.RcodeRefused, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.msg()
			r, err := query(t, srv, q)
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			if r.Id != q.Id || r.Rcode != tt.wantRcode || len(r.Answer) != tt.wantAns {
				t.Errorf("answer id %d rcode %s answers %d, want id %d rcode %s answers %d", r.Id, dns.RcodeToString[r.Rcode], len(r.Answer), q.Id, dns.RcodeToString[tt.wantRcode], tt.wantAns)
			}
		})
	}
}

func TestUpstreamDown(t *testing.T) {
	// A port nobody listens on: the first upstream fails, the second answers.
	pc, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	dead := pc.LocalAddr().String()
	pc.Close()
	srv := start(t, dead, upstream(t))
	r, err := query(t, srv, new(dns.Msg).SetQuestion("pool.ntp.org.", dns.TypeA))
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("with one dead upstream: %v, %v; want the second upstream's answer", r, err)
	}
	srv = start(t, dead)
	r, err = query(t, srv, new(dns.Msg).SetQuestion("pool.ntp.org.", dns.TypeA))
	if err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("with every upstream dead: %v, %v; want SERVFAIL", r, err)
	}
}

func TestResponsesGetNoReply(t *testing.T) {
	srv := start(t, upstream(t))
	m := new(dns.Msg).SetQuestion("pool.ntp.org.", dns.TypeA)
	m.Response = true
	if r, err := query(t, srv, m); err == nil {
		t.Errorf("a response message was answered: %v", r)
	}
}

func TestBusy(t *testing.T) {
	s, err := New(Options{Port: "eth0", Upstreams: []string{"192.0.2.1:53"}})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	s.exchange = func(ctx context.Context, m *dns.Msg, _ string) (*dns.Msg, error) {
		<-release
		return nil, errors.New("down")
	}
	for range maxInFlight {
		go s.answer(context.Background(), new(dns.Msg).SetQuestion("a.example.", dns.TypeA))
	}
	for len(s.slots) < maxInFlight {
		time.Sleep(time.Millisecond)
	}
	r := s.answer(context.Background(), new(dns.Msg).SetQuestion("b.example.", dns.TypeA))
	if r == nil || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("answer with every slot taken = %v, want an immediate SERVFAIL", r)
	}
	close(release)
}

// FuzzAnswer feeds arbitrary datagrams through the same decoding and
// decision path as the server, with an upstream that echoes.
func FuzzAnswer(f *testing.F) {
	for _, m := range []*dns.Msg{
		new(dns.Msg).SetQuestion("pool.ntp.org.", dns.TypeA),
		new(dns.Msg).SetQuestion("x.", dns.TypeANY),
	} {
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Add([]byte{})
	s, err := New(Options{Port: "eth0", Upstreams: []string{"192.0.2.1:53"}})
	if err != nil {
		f.Fatal(err)
	}
	s.exchange = func(_ context.Context, m *dns.Msg, _ string) (*dns.Msg, error) {
		return new(dns.Msg).SetReply(m), nil
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(b); err != nil {
			return
		}
		r := s.answer(context.Background(), req)
		if req.Response {
			if r != nil {
				t.Fatal("answered a response")
			}
			return
		}
		if r == nil || r.Id != req.Id || !r.Response {
			t.Fatalf("query %v got %v", req, r)
		}
		if _, err := r.Pack(); err != nil {
			t.Fatalf("answer does not pack: %v", err)
		}
	})
}
