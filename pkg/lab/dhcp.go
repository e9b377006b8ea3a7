package lab

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// udhcpcScript applies a lease as a phone does (address, default route)
// and writes udhcpc's variables, one NAME=value per line, to $LEASEFILE.
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig)
	ip addr flush dev "$interface"
	;;
bound|renew)
	env | sort > "$LEASEFILE.tmp" && mv "$LEASEFILE.tmp" "$LEASEFILE"
	ip addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	[ -n "$router" ] && ip route replace default via "$router" dev "$interface"
	;;
esac
exit 0
`

// Lease runs busybox udhcpc once on ifname (discover, or renew of what the
// interface had), applies the lease and returns udhcpc's variables (ip,
// mask, subnet, router, dns, ntpsrv, serverid, lease, ...). extra are more
// udhcpc flags, e.g. "-V", vendorClass. It fails when no lease comes within
// a few seconds.
func (h *Host) Lease(ctx context.Context, ifname string, extra ...string) (map[string]string, error) {
	script := filepath.Join(h.lab.dir, "udhcpc.sh")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		return nil, err
	}
	leaseFile := filepath.Join(h.lab.dir, h.name+"-"+ifname+".lease")
	os.Remove(leaseFile)
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	argv := append([]string{"env", "LEASEFILE=" + leaseFile, "busybox", "udhcpc", "-i", ifname, "-f", "-q", "-n",
		"-t", "6", "-T", "1", "-s", script, "-O", "ntpsrv", "-O", "tftp"}, extra...)
	out, err := h.Command(ctx, argv...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("host %s: udhcpc: %w\n%s", h, err, out)
	}
	f, err := os.Open(leaseFile)
	if err != nil {
		return nil, fmt.Errorf("host %s: udhcpc succeeded but applied no lease (%w)\n%s", h, err, out)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env, sc.Err()
}
