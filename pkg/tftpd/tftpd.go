// Package tftpd is the phone port's read-only TFTP server (RFC 1350 with
// the blksize, tsize and timeout options of RFC 2347-2349). Phones whose
// factory settings fetch their configuration over TFTP get exactly what
// the HTTP provisioning server would give them: every read request becomes
// an in-memory GET of "/"+filename on an http.Handler, with the phone's
// address as RemoteAddr, so the per-MAC authorization of pkg/provision
// applies unchanged and there is one source of provisioning files.
//
// Writes are refused. Work is bounded: a fixed number of concurrent
// transfers, files of at most 1 MiB, a retransmit limit and a deadline per
// transfer. Each transfer has its own socket (its TID, RFC 1350 §4), bound
// to the phone port like the server's.
package tftpd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configures a Server.
type Options struct {
	// Port is the phone port; every socket is bound to it
	// (SO_BINDTODEVICE), so nothing is served on the uplink.
	Port string
	// Files serves the files: GET "/"+name, RemoteAddr the client's
	// "ip:port". 200 sends the body, 403 and 404 become TFTP errors 2 and 1.
	Files http.Handler
	Log   *slog.Logger
	// Listen opens a UDP socket on addr (":69" for requests, ":0" for
	// each transfer) bound to ifname; nil means ListenUDP. Tests replace it.
	Listen func(ifname, addr string) (net.PacketConn, error)
}

// Limits on what clients can make the server do.
const (
	maxTransfers   = 16
	maxFileSize    = 1 << 20
	retransmits    = 5
	defaultTimeout = time.Second
	transferLimit  = time.Minute
	fetchTimeout   = 5 * time.Second
)

// Server serves TFTP read requests on the phone port.
type Server struct {
	opts   Options
	log    *slog.Logger
	listen func(ifname, addr string) (net.PacketConn, error)
}

// New checks opts and returns a Server; Run starts it.
func New(opts Options) (*Server, error) {
	if opts.Files == nil {
		return nil, errors.New("tftpd: Options.Files is required")
	}
	if opts.Port == "" {
		return nil, errors.New("tftpd: Options.Port is required: name the phone port (e.g. eth0) so that nothing is served on the uplink")
	}
	s := &Server{opts: opts, log: opts.Log, listen: opts.Listen}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("port", opts.Port)
	if s.listen == nil {
		s.listen = ListenUDP
	}
	return s, nil
}

// Run serves until ctx is done, waits for running transfers to stop, and
// returns nil then; it returns an error if the socket cannot be opened or
// fails.
func (s *Server) Run(ctx context.Context) error {
	conn, err := s.listen(s.opts.Port, ":69")
	if err != nil {
		return fmt.Errorf("listening for TFTP on %s UDP 69 (is another TFTP server running?): %w", s.opts.Port, err)
	}
	s.log.Info("TFTP server started", "addr", conn.LocalAddr().String())
	defer s.log.Info("TFTP server stopped")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()

	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxTransfers)
	buf := make([]byte, maxRequestLen+1)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading TFTP requests on %s: %w", s.opts.Port, err)
		}
		req, err := ParseRequest(buf[:n])
		if err != nil {
			// Errors go back only for packets that look like requests;
			// answering arbitrary datagrams would make us a reflector.
			s.log.Debug("TFTP packet ignored", "addr", from.String(), "err", err)
			continue
		}
		log := s.log.With("addr", from.String(), "file", req.Filename)
		if req.Write {
			log.Warn("TFTP write refused: the server is read-only")
			conn.WriteTo(errorPacket(errAccess, "read-only server"), from)
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			log.Warn("TFTP request refused: too many transfers running", "max", maxTransfers)
			conn.WriteTo(errorPacket(errUndefined, "server busy, retry later"), from)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.runTransfer(ctx, log, req, from)
		}()
	}
}

// runTransfer serves one read request from its own socket.
func (s *Server) runTransfer(ctx context.Context, log *slog.Logger, req Request, client net.Addr) {
	ctx, cancel := context.WithTimeout(ctx, transferLimit)
	defer cancel()
	tc, err := s.listen(s.opts.Port, ":0")
	if err != nil {
		log.Error("TFTP transfer socket not opened", "err", err)
		return
	}
	defer tc.Close()
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()

	body, code, msg := s.fetch(ctx, req.Filename, client)
	if code >= 0 {
		log.Info("TFTP request refused", "code", code, "reason", msg)
		tc.WriteTo(errorPacket(uint16(code), msg), client)
		return
	}
	if req.Mode == "netascii" {
		body = toNetascii(body)
	}
	opts, ack := negotiate(req.Options)
	if opts.tsize {
		ack = append(ack, "tsize", strconv.Itoa(len(body)))
	}
	t := &transfer{conn: tc, peer: client, timeout: defaultTimeout}
	if opts.timeout > 0 {
		t.timeout = time.Duration(opts.timeout) * time.Second
	}
	if len(ack) > 0 {
		// RFC 2347: the client acknowledges the OACK with ACK 0.
		if err := t.exchange(ctx, oackPacket(ack), 0); err != nil {
			log.Info("TFTP transfer abandoned at option negotiation", "err", err)
			return
		}
	}
	pkt := make([]byte, 0, 4+opts.blksize)
	block := uint16(1)
	for off := 0; ; block++ {
		end := min(off+opts.blksize, len(body))
		if err := t.exchange(ctx, dataPacket(pkt, block, body[off:end]), block); err != nil {
			log.Info("TFTP transfer abandoned", "block", block, "err", err)
			return
		}
		// The last block is the first one shorter than blksize (possibly
		// empty).
		if end-off < opts.blksize {
			break
		}
		off = end
	}
	log.Info("TFTP file sent", "bytes", len(body), "blksize", opts.blksize)
}

// transfer is one client's exchange; owned by its runTransfer goroutine.
type transfer struct {
	conn    net.PacketConn
	peer    net.Addr
	timeout time.Duration
	buf     [516]byte
}

var errNoAck = errors.New("no acknowledgement")

// exchange sends pkt until ACK block arrives from the peer, at most
// retransmits+1 times. Packets from other addresses are told they have the
// wrong TID; duplicate ACKs of earlier blocks are ignored (retransmitting
// on them would cause the Sorcerer's Apprentice syndrome, RFC 1123 §4.2.3.1).
func (t *transfer) exchange(ctx context.Context, pkt []byte, block uint16) error {
	for range retransmits + 1 {
		if _, err := t.conn.WriteTo(pkt, t.peer); err != nil {
			return err
		}
		deadline := time.Now().Add(t.timeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		t.conn.SetReadDeadline(deadline)
		for {
			n, from, err := t.conn.ReadFrom(t.buf[:])
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // retransmit
				}
				return err
			}
			if from.String() != t.peer.String() {
				t.conn.WriteTo(errorPacket(errUnknownTID, "unknown transfer ID"), from)
				continue
			}
			if n < 4 {
				continue
			}
			switch binary.BigEndian.Uint16(t.buf[:]) {
			case opACK:
				if binary.BigEndian.Uint16(t.buf[2:]) == block {
					return nil
				}
			case opERROR:
				return fmt.Errorf("client sent error %d: %q", binary.BigEndian.Uint16(t.buf[2:]), strings.TrimRight(string(t.buf[4:n]), "\x00"))
			default:
				t.conn.WriteTo(errorPacket(errIllegalOp, "expected ACK"), t.peer)
				return errors.New("client sent an unexpected packet")
			}
		}
	}
	return fmt.Errorf("%w of block %d after %d sends", errNoAck, block, retransmits+1)
}

// fetch gets name from the handler. code is -1 on success, else the TFTP
// error code and message to send.
func (s *Server) fetch(ctx context.Context, name string, client net.Addr) (body []byte, code int, msg string) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	// Phones ask for "cfgMAC.xml" or "/cfgMAC.xml"; both are the same file.
	p := "/" + strings.TrimLeft(name, "/")
	r := (&http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Path: p},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"User-Agent": {"tftp"}},
		Host:       "tftp",
		RemoteAddr: client.String(),
		RequestURI: p,
		Body:       http.NoBody,
	}).WithContext(ctx)
	w := &bufferWriter{header: http.Header{}}
	s.opts.Files.ServeHTTP(w, r)
	switch {
	case w.overflow:
		return nil, errUndefined, "file too large for TFTP"
	case w.status == 0 || w.status == http.StatusOK:
		return w.body.Bytes(), -1, ""
	case w.status == http.StatusForbidden:
		return nil, errAccess, "access violation"
	case w.status == http.StatusNotFound:
		return nil, errNotFound, "file not found"
	default:
		return nil, errUndefined, "cannot read file: " + http.StatusText(w.status)
	}
}

// bufferWriter captures a handler's status and body, up to maxFileSize.
type bufferWriter struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
}

func (w *bufferWriter) Header() http.Header { return w.header }

func (w *bufferWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *bufferWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.body.Len()+len(b) > maxFileSize {
		w.overflow = true
		return 0, errors.New("tftpd: file larger than 1 MiB")
	}
	return w.body.Write(b)
}
