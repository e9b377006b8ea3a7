// Package control is the local socket between peerlined and the peerline
// command: one JSON request per connection, one JSON response back.
//
// A Unix socket in the daemon's run directory, mode 0660, is the access
// control: whoever may open it may run every command, which is root (and a
// group the administrator chooses). One request per connection keeps both
// ends trivial and lets the daemon bound each one in size and time.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// SocketName is the socket's file name in the daemon's run directory.
const SocketName = "control.sock"

// SocketPath is the control socket of a daemon with this run directory.
func SocketPath(runDir string) string { return filepath.Join(runDir, SocketName) }

const (
	// maxMessage bounds a request and a response; the largest answer, the
	// phone table at 254 lines, is about 100 KiB.
	maxMessage = 1 << 20
	// timeout bounds one connection, so a stuck client cannot hold a
	// handler slot. `peerline join` waits up to 20 s for the other Pi.
	timeout = 25 * time.Second
	// maxConcurrent is how many requests run at once; more wait.
	maxConcurrent = 8
)

// Request is one command.
type Request struct {
	Command string          `json:"command"`
	Args    json.RawMessage `json:"args,omitempty"`
}

// Response carries either a result or an error meant for the user.
type Response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// Handler runs one command; args is the request's raw Args. Its error is
// shown to the user as it is, so it should say what to do.
type Handler func(ctx context.Context, args json.RawMessage) (any, error)

// Server answers requests on the control socket.
type Server struct {
	ln       *net.UnixListener
	path     string
	handlers map[string]Handler
	log      *slog.Logger
}

// Listen creates the socket at path. A socket file left by a daemon that
// died is replaced; one that still answers means another daemon owns it.
func Listen(path string, handlers map[string]Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s is in use by another peerlined", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale control socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Connecting needs write permission, which the usual umask already
	// withholds from others until this tightens it further.
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &Server{ln: ln, path: path, handlers: handlers, log: log}, nil
}

// Serve answers requests until ctx is cancelled, then removes the socket.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	defer os.Remove(s.path)
	slots := make(chan struct{}, maxConcurrent)
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("control socket: %w", err)
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			c.Close()
			return nil
		}
		go func() {
			defer func() { <-slots }()
			s.serveConn(ctx, c)
		}()
	}
}

func (s *Server) serveConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var req Request
	resp := Response{}
	if err := json.NewDecoder(io.LimitReader(c, maxMessage)).Decode(&req); err != nil {
		resp.Error = "malformed request: " + err.Error()
	} else if h, ok := s.handlers[req.Command]; !ok {
		resp.Error = fmt.Sprintf("unknown command %q; this peerlined may be older than the peerline command", req.Command)
	} else if result, err := h(ctx, req.Args); err != nil {
		resp.Error = err.Error()
	} else if resp.Result, err = json.Marshal(result); err != nil {
		resp.Error = "encoding the answer: " + err.Error()
	}
	if resp.Error != "" {
		s.log.Debug("control request failed", "command", req.Command, "err", resp.Error)
	}
	if err := json.NewEncoder(c).Encode(resp); err != nil {
		s.log.Debug("control: writing the answer", "err", err)
	}
}

// RemoteError is an error the daemon returned for a request.
type RemoteError struct{ Message string }

func (e *RemoteError) Error() string { return e.Message }

// ErrNoDaemon means nothing listens on the control socket.
var ErrNoDaemon = errors.New("peerlined is not running")

// Call sends command with args (nil for none) to the daemon at path and
// decodes its result into result (nil to ignore it).
func Call(ctx context.Context, path, command string, args, result any) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("%w (no control socket at %s): start it with `systemctl start peerlined`, or point -socket at the right one", ErrNoDaemon, path)
		case errors.Is(err, os.ErrPermission):
			return fmt.Errorf("no permission to use %s: run peerline as root", path)
		}
		return fmt.Errorf("connecting to peerlined: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(timeout + 5*time.Second))
	}
	req := Request{Command: command}
	if args != nil {
		if req.Args, err = json.Marshal(args); err != nil {
			return err
		}
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("sending to peerlined: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(io.LimitReader(c, maxMessage)).Decode(&resp); err != nil {
		return fmt.Errorf("reading peerlined's answer: %w", err)
	}
	if resp.Error != "" {
		return &RemoteError{resp.Error}
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(resp.Result, result); err != nil {
		return fmt.Errorf("peerlined's answer to %s: %w", command, err)
	}
	return nil
}

// Caller runs a command: the socket client (Client) for `peerline`, Local
// inside the daemon for the web console. Both go through the same
// handlers, so the console and the command never compute anything twice.
type Caller interface {
	Call(ctx context.Context, command string, args, result any) error
}

// Client calls the daemon on its socket.
type Client struct{ Path string }

// Call is Call(ctx, c.Path, …).
func (c Client) Call(ctx context.Context, command string, args, result any) error {
	return Call(ctx, c.Path, command, args, result)
}

// Local calls handlers in the same process, encoding arguments and
// results as the socket does, so that a handler sees exactly what a
// socket request would give it.
type Local map[string]Handler

// Call runs command's handler.
func (l Local) Call(ctx context.Context, command string, args, result any) error {
	h, ok := l[command]
	if !ok {
		return &RemoteError{fmt.Sprintf("unknown command %q", command)}
	}
	var raw json.RawMessage
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return err
		}
		raw = b
	}
	out, err := h(ctx, raw)
	if err != nil {
		return &RemoteError{err.Error()}
	}
	if result == nil {
		return nil
	}
	b, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encoding the answer to %s: %w", command, err)
	}
	return json.Unmarshal(b, result)
}
