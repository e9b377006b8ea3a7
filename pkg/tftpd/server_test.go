package tftpd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// files is a fake provisioning handler: it serves cfg<ip>.txt only to that
// ip, like pkg/provision serves a phone only its own file.
type files struct {
	mu   sync.Mutex
	seen []string // RemoteAddr of each request
}

func (f *files) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.seen = append(f.seen, r.RemoteAddr)
	f.mu.Unlock()
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	switch {
	case r.URL.Path == "/big":
		w.Write(bytes.Repeat([]byte("x"), maxFileSize+1))
	case r.URL.Path == "/broken":
		http.Error(w, "oops", http.StatusInternalServerError)
	case r.URL.Path == "/text":
		fmt.Fprint(w, "line1\nline2\n")
	case r.URL.Path == "/block":
		w.Write(bytes.Repeat([]byte("b"), 1024)) // exactly two 512-byte blocks
	case strings.HasPrefix(r.URL.Path, "/cfg"):
		if r.URL.Path != "/cfg"+host+".txt" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		w.Write(content(3000))
	default:
		http.NotFound(w, r)
	}
}

func content(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func startServer(t *testing.T, h http.Handler) net.Addr {
	t.Helper()
	var addr net.Addr
	s, err := New(Options{Port: "lo", Files: h, Listen: func(ifname, a string) (net.PacketConn, error) {
		if ifname != "lo" || (a != ":69" && a != ":0") {
			return nil, fmt.Errorf("unexpected listen %s %s", ifname, a)
		}
		return net.ListenPacket("udp4", "127.0.0.1:0")
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Learn the server address by wrapping listen once more.
	inner := s.listen
	ready := make(chan net.Addr, 1)
	s.listen = func(ifname, a string) (net.PacketConn, error) {
		c, err := inner(ifname, a)
		if err == nil && a == ":69" {
			ready <- c.LocalAddr()
		}
		return c, err
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	select {
	case addr = <-ready:
	case err := <-errc:
		t.Fatalf("Run = %v", err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10 s of cancel")
		}
	})
	return addr
}

// get is a small TFTP client. dropFirst drops the first DATA packet of
// block 1 to exercise retransmission.
func get(c net.PacketConn, srv net.Addr, req []byte, dropFirst bool) (data []byte, oack map[string]string, err error) {
	if _, err := c.WriteTo(req, srv); err != nil {
		return nil, nil, err
	}
	blksize := 512
	want := uint16(1)
	dropped := false
	buf := make([]byte, 70000)
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return nil, nil, err
		}
		p := buf[:n]
		switch binary.BigEndian.Uint16(p) {
		case opERROR:
			return nil, nil, fmt.Errorf("error %d %s", binary.BigEndian.Uint16(p[2:]), strings.TrimRight(string(p[4:]), "\x00"))
		case opOACK:
			f := strings.Split(strings.TrimSuffix(string(p[2:]), "\x00"), "\x00")
			oack = map[string]string{}
			for i := 0; i+1 < len(f); i += 2 {
				oack[f[i]] = f[i+1]
			}
			if v, ok := oack["blksize"]; ok {
				fmt.Sscan(v, &blksize)
			}
			c.WriteTo([]byte{0, opACK, 0, 0}, from)
		case opDATA:
			if from.String() == srv.String() {
				return nil, nil, errors.New("DATA from the request port instead of a new TID")
			}
			blk := binary.BigEndian.Uint16(p[2:])
			if dropFirst && !dropped {
				dropped = true
				continue
			}
			if blk == want {
				data = append(data, p[4:]...)
				want++
			}
			c.WriteTo([]byte{0, opACK, byte(blk >> 8), byte(blk)}, from)
			if blk == want-1 && n-4 < blksize {
				return data, oack, nil
			}
		}
	}
}

func TestServe(t *testing.T) {
	h := &files{}
	srv := startServer(t, h)
	tests := []struct {
		name     string
		req      []byte
		drop     bool
		want     []byte
		wantOACK map[string]string
		wantErr  string
	}{
		{"own file", rrq(1, "cfg127.0.0.1.txt", "octet"), false, content(3000), nil, ""},
		{"leading slash", rrq(1, "/cfg127.0.0.1.txt", "octet"), false, content(3000), nil, ""},
		{"two leading slashes", rrq(1, "//cfg127.0.0.1.txt", "octet"), false, content(3000), nil, ""},
		{"three leading slashes", rrq(1, "///cfg127.0.0.1.txt", "octet"), false, content(3000), nil, ""},
		{"lost block retransmitted", rrq(1, "cfg127.0.0.1.txt", "octet"), true, content(3000), nil, ""},
		{"options", rrq(1, "cfg127.0.0.1.txt", "octet", "blksize", "1428", "tsize", "0", "timeout", "2"), false, content(3000),
			map[string]string{"blksize": "1428", "tsize": "3000", "timeout": "2"}, ""},
		{"exact multiple of the block size ends with an empty block", rrq(1, "block", "octet"), false, bytes.Repeat([]byte("b"), 1024), nil, ""},
		{"netascii", rrq(1, "text", "netascii"), false, []byte("line1\r\nline2\r\n"), nil, ""},
		{"another phone's file", rrq(1, "cfg10.0.2.1.txt", "octet"), false, nil, nil, "error 2 access violation"},
		{"missing", rrq(1, "nothing", "octet"), false, nil, nil, "error 1 file not found"},
		{"handler failure", rrq(1, "broken", "octet"), false, nil, nil, "error 0 cannot read file: Internal Server Error"},
		{"too large", rrq(1, "big", "octet"), false, nil, nil, "error 0 file too large for TFTP"},
		{"write refused", rrq(2, "cfg127.0.0.1.txt", "octet"), false, nil, nil, "error 2 read-only server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, oack, err := get(c, srv, tt.req, tt.drop)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("get = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got %d bytes, want %d", len(got), len(tt.want))
			}
			if fmt.Sprint(oack) != fmt.Sprint(tt.wantOACK) {
				t.Errorf("OACK %v, want %v", oack, tt.wantOACK)
			}
		})
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ra := range h.seen {
		if !strings.HasPrefix(ra, "127.0.0.1:") {
			t.Errorf("handler saw RemoteAddr %q, want the client's address", ra)
		}
	}
}

func TestGarbageIgnored(t *testing.T) {
	srv := startServer(t, &files{})
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WriteTo([]byte{0, 4, 0, 1}, srv)
	c.WriteTo([]byte("hello"), srv)
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := c.ReadFrom(make([]byte, 600)); err == nil {
		t.Fatalf("garbage answered with %d bytes", n)
	}
	if _, _, err := get(c, srv, rrq(1, "text", "octet"), false); err != nil {
		t.Fatalf("server stopped serving after garbage: %v", err)
	}
}

func TestClientGoneAbandons(t *testing.T) {
	srv := startServer(t, &files{})
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WriteTo(rrq(1, "text", "octet", "timeout", "1"), srv)
	// Never ACK: count OACK (re)sends until the server gives up.
	sends := 0
	buf := make([]byte, 600)
	for {
		c.SetReadDeadline(time.Now().Add(2500 * time.Millisecond))
		if _, _, err := c.ReadFrom(buf); err != nil {
			break
		}
		sends++
	}
	if sends != retransmits+1 {
		t.Errorf("server sent %d times to a silent client, want %d", sends, retransmits+1)
	}
}

func TestNew(t *testing.T) {
	if _, err := New(Options{Port: "eth0"}); err == nil {
		t.Error("New without Files succeeded")
	}
	if _, err := New(Options{Files: &files{}}); err == nil {
		t.Error("New without Port succeeded")
	}
}
