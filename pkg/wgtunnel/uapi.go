package wgtunnel

import (
	"fmt"
	"net"

	"golang.zx2c4.com/wireguard/ipc"
)

// listenUAPI opens the device's UAPI socket (<socket dir>/<name>.sock) as
// a plain Unix listener. wireguard-go's ipc.UAPIListen also watches the
// socket file with an inotify instance of its own, to close the listener
// when someone deletes the file; the kernel allows 128 inotify instances
// per user by default, so past about 124 devices new tunnels failed with
// "too many open files". Nothing here needs that watch: the daemon removes
// its sockets itself (Close, and removeStaleSockets at start).
func listenUAPI(name string) (net.Listener, error) {
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		return nil, fmt.Errorf("opening UAPI socket for %s: %w", name, err)
	}
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listening on UAPI socket for %s: %w", name, err)
	}
	if ul, ok := l.(*net.UnixListener); ok {
		// The file is ours alone: remove it when the tunnel closes.
		ul.SetUnlinkOnClose(true)
	}
	return l, nil
}
