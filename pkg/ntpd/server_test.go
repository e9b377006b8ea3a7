package ntpd

import (
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/labtest"
)

// query sends one SNTP request from conn to addr and returns the answer,
// or an error after timeout.
func query(conn net.PacketConn, addr net.Addr, xmt time.Time, timeout time.Duration) ([]byte, error) {
	if _, err := conn.WriteTo(clientPacket(4, modeClient, xmt), addr); err != nil {
		return nil, err
	}
	conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 512)
	n, _, err := conn.ReadFrom(buf)
	return buf[:n], err
}

// offset is the client's clock offset from an SNTP answer (RFC 4330 §5).
func offset(resp []byte, t1, t4 time.Time) time.Duration {
	t2 := timestamp(resp[offReceive:], t4)
	t3 := timestamp(resp[offTransmit:], t4)
	return (t2.Sub(t1) + t3.Sub(t4)) / 2
}

// startServer runs a Server on a loopback socket and returns its address.
func startServer(t *testing.T, opts Options) net.Addr {
	t.Helper()
	srvConn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Port = "lo"
	opts.Listen = func(ifname string) (net.PacketConn, error) {
		if ifname != "lo" {
			return nil, errors.New("listen on the wrong port " + ifname)
		}
		return srvConn, nil
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	labtest.Serve(t, s.Run)
	return srvConn.LocalAddr()
}

func TestServerAnswersWithItsClock(t *testing.T) {
	skew := 90 * time.Minute // the served clock is 90 min ahead of ours
	synced := true
	addr := startServer(t, Options{
		Now:    func() time.Time { return time.Now().Add(skew) },
		Synced: func() bool { return synced },
	})
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t1 := time.Now()
	resp, err := query(c, addr, t1, 2*time.Second)
	t4 := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp) != headerLen || resp[1] != 2 || resp[0]>>6 != leapNone {
		t.Fatalf("answer %x: want 48 bytes, stratum 2, LI 0", resp)
	}
	if off := offset(resp, t1, t4); (off - skew).Abs() > 100*time.Millisecond {
		t.Errorf("offset = %v, want %v", off, skew)
	}
}

func TestServerUnsynced(t *testing.T) {
	addr := startServer(t, Options{Synced: func() bool { return false }})
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := query(c, addr, time.Now(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp[0]>>6 != leapAlarm || resp[1] != 0 || string(resp[offRefID:offRefID+4]) != "INIT" {
		t.Errorf("answer %x: want LI 3, stratum 0, INIT", resp)
	}
}

func TestServerIgnoresGarbageAndFloods(t *testing.T) {
	addr := startServer(t, Options{Synced: func() bool { return true }})
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Garbage first: the server must stay silent and keep serving. It
	// costs the source tokens as well, so garbage cannot flood either.
	garbage := [][]byte{{0x17, 0, 3, 0x2a}, clientPacket(2, 6, t0), clientPacket(4, 4, t0)}
	for _, b := range garbage {
		if _, err := c.WriteTo(b, addr); err != nil {
			t.Fatal(err)
		}
	}
	answered := 0
	for range rateBurst + 4 {
		if _, err := query(c, addr, time.Now(), 300*time.Millisecond); err == nil {
			answered++
		}
	}
	if want := rateBurst - len(garbage); answered != want {
		t.Errorf("%d of %d back-to-back requests answered, want the rest of the burst, %d", answered, rateBurst+4, want)
	}
}

func TestNewNeedsPort(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without Port succeeded; nothing would stop it serving the uplink")
	}
}

func TestRunReportsListenError(t *testing.T) {
	s, err := New(Options{Port: "eth9", Listen: func(string) (net.PacketConn, error) { return nil, errors.New("no such device") }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(t.Context()); err == nil {
		t.Error("Run succeeded without a socket")
	}
}

func TestRunNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("serve", func(t *testing.T) { startServer(t, Options{Synced: func() bool { return true }}) })
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Run returned, %d before", n, before)
	}
}
