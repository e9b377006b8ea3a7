//go:build !linux

package wgtunnel

import (
	"errors"

	"golang.zx2c4.com/wireguard/tun"
)

var errNoParking = errors.New("wgtunnel: this TUN cannot park a device")

// createTUN is wireguard-go's TUN, which cannot let go of a parked device's
// reader: the device never parks here.
func createTUN(name string, mtu int) (baseTUN, error) {
	t, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, err
	}
	return unparkable{t}, nil
}

type unparkable struct{ tun.Device }

func (unparkable) interrupt()          {}
func (unparkable) resume()             {}
func (unparkable) waitReadable() error { return errNoParking }
func (unparkable) parks() bool         { return false }
