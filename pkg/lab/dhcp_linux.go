package lab

import (
	"context"
	"fmt"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// DHCPExchange runs a full DHCP exchange on ifname with a Go client that
// keeps every option as the server sent it (busybox hides some, such as a
// URL in option 66), and returns the ACK. It applies nothing.
func (h *Host) DHCPExchange(ctx context.Context, ifname string, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	// The client's packet socket is opened inside the namespace and keeps
	// working from any goroutine afterwards.
	c, err := In(h, func() (*nclient4.Client, error) {
		return nclient4.New(ifname, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
	})
	if err != nil {
		return nil, fmt.Errorf("host %s: DHCP client: %w", h, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lease, err := c.Request(ctx, mods...)
	if err != nil {
		return nil, fmt.Errorf("host %s: DHCP exchange: %w", h, err)
	}
	return lease.ACK, nil
}
