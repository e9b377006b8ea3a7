package control

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func startServer(t *testing.T, handlers map[string]Handler) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), SocketName)
	s, err := Listen(path, handlers, nil)
	if err != nil {
		t.Fatalf("Listen() = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket still there after Serve returned: %v", err)
		}
	})
	return path
}

func TestCall(t *testing.T) {
	path := startServer(t, map[string]Handler{
		CmdForgetPhone: func(ctx context.Context, args json.RawMessage) (any, error) {
			var a ForgetPhoneArgs
			if err := json.Unmarshal(args, &a); err != nil {
				return nil, err
			}
			if a.Line != 3 {
				return nil, errors.New("line 9 has no phone; see `peerline phones`")
			}
			return map[string]int{"freed": a.Line}, nil
		},
		CmdStatus: func(context.Context, json.RawMessage) (any, error) {
			return Status{Name: "alice", Lines: []int{1}}, nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var st Status
	if err := Call(ctx, path, CmdStatus, nil, &st); err != nil || st.Name != "alice" {
		t.Errorf("status = %+v, %v", st, err)
	}
	var freed map[string]int
	if err := Call(ctx, path, CmdForgetPhone, ForgetPhoneArgs{Line: 3}, &freed); err != nil || freed["freed"] != 3 {
		t.Errorf("forget 3 = %v, %v", freed, err)
	}
	err := Call(ctx, path, CmdForgetPhone, ForgetPhoneArgs{Line: 9}, nil)
	var re *RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "peerline phones") {
		t.Errorf("forget 9 = %v, want the handler's error as a RemoteError", err)
	}
	if err := Call(ctx, path, "frobnicate", nil, nil); err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command = %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode = %v, %v; want 0660", fi.Mode().Perm(), err)
	}
}

func TestCallWithoutDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	err := Call(context.Background(), path, CmdStatus, nil, nil)
	if !errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), "systemctl start peerlined") {
		t.Errorf("Call() without daemon = %v, want ErrNoDaemon saying how to start it", err)
	}
	// A socket file nobody listens on (a daemon killed by -9) is the same.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if err := Call(context.Background(), path, CmdStatus, nil, nil); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("Call() to a dead socket = %v, want ErrNoDaemon", err)
	}
	// And Listen replaces it.
	s, err := Listen(path, nil, nil)
	if err != nil {
		t.Fatalf("Listen() over a stale socket = %v", err)
	}
	s.ln.Close()
}

func TestListenRefusesLiveSocket(t *testing.T) {
	path := startServer(t, nil)
	if _, err := Listen(path, nil, nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Listen() = %v, want in use", err)
	}
}

func TestMalformedRequests(t *testing.T) {
	path := startServer(t, map[string]Handler{
		CmdStatus: func(context.Context, json.RawMessage) (any, error) { return Status{}, nil },
	})
	for _, in := range []string{"", "{", "[]", `{"command": 7}`, strings.Repeat(" ", maxMessage+10) + "{}"} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(in))
		c.(*net.UnixConn).CloseWrite()
		var resp Response
		if err := json.NewDecoder(c).Decode(&resp); err != nil || resp.Error == "" {
			t.Errorf("request %.20q: response %+v, %v; want an error response", in, resp, err)
		}
		c.Close()
	}
	// The server still answers afterwards.
	if err := Call(context.Background(), path, CmdStatus, nil, nil); err != nil {
		t.Errorf("Call() after bad requests = %v", err)
	}
}

func TestDurationJSON(t *testing.T) {
	d := Duration(12345 * time.Microsecond)
	b, err := json.Marshal(d)
	if err != nil || string(b) != "12.345" {
		t.Fatalf("Marshal = %s, %v; want 12.345", b, err)
	}
	var back Duration
	if err := json.Unmarshal(b, &back); err != nil || back != d {
		t.Errorf("Unmarshal = %v, %v; want %v", time.Duration(back), err, time.Duration(d))
	}
}
