package netifs

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// subscribe asks the kernel for link and address changes in the calling
// thread's network namespace. The channel closes when either
// subscription ends: ctx ended, or the kernel dropped messages (a full
// socket buffer), after which the caller subscribes and lists again.
func subscribe(ctx context.Context) (<-chan event, error) {
	ctx, cancel := context.WithCancel(ctx)
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	// A message the library cannot read is skipped; the subscription
	// ends (its channel closes) only when the socket fails, which is
	// what the caller acts on. The larger buffer holds the burst of a
	// node's tunnels coming up.
	const rcvbuf = 1 << 20
	// ListExisting names every link once, so address events on skipped
	// links are known for what they are from the start.
	if err := netlink.LinkSubscribeWithOptions(links, ctx.Done(), netlink.LinkSubscribeOptions{ListExisting: true, ReceiveBufferSize: rcvbuf}); err != nil {
		cancel()
		return nil, fmt.Errorf("subscribing to link changes: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, ctx.Done(), netlink.AddrSubscribeOptions{ReceiveBufferSize: rcvbuf}); err != nil {
		cancel()
		return nil, fmt.Errorf("subscribing to address changes: %w", err)
	}
	out := make(chan event, 64)
	go func() {
		defer close(out)
		defer cancel()
		for links != nil || addrs != nil {
			var ev event
			select {
			case u, ok := <-links:
				if !ok {
					links = nil
					cancel()
					continue
				}
				a := u.Link.Attrs()
				ev = event{index: a.Index, name: a.Name, link: true, gone: u.Header.Type == unix.RTM_DELLINK}
			case u, ok := <-addrs:
				if !ok {
					addrs = nil
					cancel()
					continue
				}
				ev = event{index: u.LinkIndex}
			}
			select {
			case out <- ev:
			case <-ctx.Done():
			}
		}
	}()
	return out, nil
}
