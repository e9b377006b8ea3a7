//go:build !linux

package netifs

import (
	"context"
	"errors"
	"fmt"
)

// subscribe: change events are read from netlink, which only Linux has;
// elsewhere the Watcher lists at its fallback interval.
func subscribe(context.Context) (<-chan event, error) {
	return nil, fmt.Errorf("interface change events: %w", errors.ErrUnsupported)
}
