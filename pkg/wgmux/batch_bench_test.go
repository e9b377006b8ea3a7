package wgmux

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/peerline/peerline/pkg/nodekey"
)

// BenchmarkBatchSize: what a packet costs through two wireguard-go devices
// on two muxes over loopback (TUN -> encrypt -> socket -> decrypt -> TUN),
// with the Bind's batch of 1 (what the node uses: it keeps each device's
// buffers small) and of 8, with up to 32 packets in flight. ns/op is per
// packet, CPU of the whole process.
func BenchmarkBatchSize(b *testing.B) {
	for _, size := range []int{1, 8} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			defer func(old int) { batchSize = old }(batchSize)
			batchSize = size
			benchPair(b)
		})
	}
}

func benchPair(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	type end struct {
		key nodekey.Key
		mux *Mux
		tun *tuntest.ChannelTUN
		dev *device.Device
	}
	var ends [2]*end
	for i := range ends {
		k, _ := nodekey.Generate()
		m, err := Listen("127.0.0.1:0", k, log)
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		go m.Run(ctx)
		ends[i] = &end{key: k, mux: m, tun: tuntest.NewChannelTUN()}
	}
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 254, byte(i + 1), 1}) }
	for i, e := range ends {
		o := ends[1-i]
		e.dev = device.NewDevice(e.tun.TUN(), e.mux.Bind(o.key.Public()), device.NewLogger(device.LogLevelSilent, ""))
		defer e.dev.Close()
		if err := e.dev.IpcSet(fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=%s/32\n",
			e.key.Hex(), o.key.Public().Hex(), o.mux.Port(), addr(1-i))); err != nil {
			b.Fatal(err)
		}
		if err := e.dev.Up(); err != nil {
			b.Fatal(err)
		}
	}
	pkt := tuntest.Ping(addr(1), addr(0))
	// The handshake.
	select {
	case ends[0].tun.Outbound <- pkt:
	case <-time.After(5 * time.Second):
		b.Fatal("device did not read")
	}
	select {
	case <-ends[1].tun.Inbound:
	case <-time.After(5 * time.Second):
		b.Fatal("no handshake within 5 s")
	}
	const inFlight = 32
	credits := make(chan struct{}, inFlight)
	for range inFlight {
		credits <- struct{}{}
	}
	lost := 0
	b.ResetTimer()
	go func() {
		for range b.N {
			select {
			case <-credits:
			case <-ctx.Done():
				return
			}
			select {
			case ends[0].tun.Outbound <- pkt:
			case <-ctx.Done():
				return
			}
		}
	}()
	for got := 0; got < b.N; got++ {
		select {
		case <-ends[1].tun.Inbound:
		case <-time.After(200 * time.Millisecond):
			lost++
		}
		credits <- struct{}{}
	}
	b.StopTimer()
	b.ReportMetric(float64(lost), "lost")
}
