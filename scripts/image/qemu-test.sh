#!/usr/bin/env bash
# qemu-test.sh IMAGE — boot the SD image in qemu-system-aarch64 (-M virt,
# software emulation) and check from the host that peerlined reached READY
# and that a phone on the phone port gets its line by DHCP and reaches its
# gateway.
#
# The kernel, initrd and command line come out of the image's own FAT, the
# image is the virtio disk, so this boots what would be flashed (less the Pi
# firmware). NICs: eth0 = the phone port, a tap in a network namespace made
# here, where busybox udhcpc plays the phone; eth1 = the uplink, qemu user
# networking with restrict=on, so the guest reaches nothing outside. qemu
# itself runs in that namespace: nothing is added to the machine's root
# namespace, and the phone's 10.0.s.1/30 exists only in it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=scripts/image/lib.sh
. "$here/lib.sh"

img=${1:-$repo/out/peerline-arm64.img}
BUILD_DIR=${BUILD_DIR:-$repo/build}
TIMEOUT=${TIMEOUT:-300}
NODE_NAME=${NODE_NAME:-qemu-test}
CPU=${CPU:-cortex-a72}
work=$BUILD_DIR/qemu-test
ns=plimg-$$
log=$work/console.log

MAKE_TARGET=qemu-test
stage "qemu-test: checks"
need_root "the phone's network namespace and tap"
need_cmd qemu-system-aarch64 mcopy sfdisk ip ping busybox timeout
busybox udhcpc --help >/dev/null 2>&1 || die "this busybox has no udhcpc applet; install Debian's busybox"
[ -f "$img" ] || die "$img missing; run: make image"
[ -e /dev/net/tun ] || die "/dev/net/tun missing; load the tun module (modprobe tun)"
need_space "$BUILD_DIR" 1500

qemu_cleanup_on_exit

stage "qemu-test: prepare a copy of the image"
rm -rf "$work"
mkdir -p "$work"
cp --sparse=always "$img" "$work/test.img"
boot_off=$(sfdisk -d "$work/test.img" | awk -F'[=,]' '/start=/ {print $2 * 512; exit}')
[ -n "$boot_off" ] || die "no partition table in $img"
fat="$work/test.img@@$boot_off"
for f in vmlinuz initrd.img cmdline.txt peerline.txt; do
	mcopy -n -i "$fat" "::$f" "$work/$f" || die "$f is not on the image's boot partition"
done
# The boot config a user would edit: node name, and the uplink is eth1
# (qemu has no Wi-Fi). The phone settings (phone_dhcp, lines) are left as
# shipped, so the test also checks the default: DHCP on, no fixed lines.
# Earlier settings of these keys go, ours are appended.
sed -i -E '/^[[:space:]]*(name|uplink_interface|phone_dhcp|lines)[[:space:]]*=/d' "$work/peerline.txt"
printf '\n# set by make qemu-test\nname = %s\nuplink_interface = eth1\n' "$NODE_NAME" >>"$work/peerline.txt"
mcopy -o -i "$fat" "$work/peerline.txt" ::peerline.txt
# The Pi's serial console names mean nothing to -M virt; its PL011 is ttyAMA0.
# QEMU_CMDLINE is what only the emulated boot gets. kpti=0: the kernel turns
# page table isolation on because of KASLR (the Pi's Cortex-A53/A72/A76 are
# not Meltdown-affected), and under TCG every kernel entry and exit then
# flushes qemu's whole software TLB: back to back, the boot to READY took
# qemu 145 s of CPU with it and 67 s without (board/README.md). A real Pi
# keeps cmdline.txt as it is. QEMU_CMDLINE= (empty) boots the Pi's line unchanged;
# CMDLINE_EXTRA adds parameters for experiments (e.g. "quiet").
QEMU_CMDLINE=${QEMU_CMDLINE-kpti=0}
cmdline="$(sed -E 's/(^| )console=[^ ]*//g; s/^ +//' "$work/cmdline.txt" | tr -d '\n') console=ttyAMA0${QEMU_CMDLINE:+ $QEMU_CMDLINE}${CMDLINE_EXTRA:+ $CMDLINE_EXTRA}"
echo "    cmdline: $cmdline"
# ANALYZE=1: where the boot's time goes. The image has no shell to log in
# to, so a unit that prints systemd-analyze's view once the boot has
# finished is handed to the guest's systemd on the kernel command line (a
# systemd.extra-unit credential; the image itself is not changed).
if [ "${ANALYZE:-0}" = 1 ]; then
	# shellcheck disable=SC2016 # $$ is the unit file's literal $
	unit='[Unit]
Description=make qemu-test ANALYZE=1: systemd-analyze to the console
DefaultDependencies=no
[Service]
Type=exec
StandardOutput=journal+console
ExecStart=/bin/sh -c "systemctl is-system-running --wait >/dev/null; systemd-analyze; systemd-analyze blame --no-pager | head -n 45; systemd-analyze critical-chain --no-pager peerlined.service; echo modules: $$(lsmod | sed 1d | cut -d\\  -f1 | sort | tr \\\\n \\ ); echo devices: $$(udevadm info -e | grep -c ^P:); echo analyze-done"'
	cmdline="$cmdline systemd.set_credential_binary=systemd.extra-unit.plimg-analyze.service:$(printf '%s\n' "$unit" | base64 -w0) systemd.wants=plimg-analyze.service"
fi

stage "qemu-test: phone namespace $ns"
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" tuntap add dev phone0 mode tap
# A fixed phone MAC (locally administered), so a lease is the same each run.
ip -n "$ns" link set phone0 address 02:50:4c:00:01:01
ip -n "$ns" link set phone0 up

stage "qemu-test: boot (timeout ${TIMEOUT} s)"
: >"$log"
t0=$(date +%s.%N)
# Device order fixes the names: the first NIC probed is eth0 (phone port).
ip netns exec "$ns" qemu-system-aarch64 -M virt -cpu "$CPU" -smp 2 -m 1024 \
	-display none -monitor none -serial "file:$log" -no-reboot \
	-kernel "$work/vmlinuz" -initrd "$work/initrd.img" -append "$cmdline" \
	-drive "if=none,file=$work/test.img,format=raw,id=hd,snapshot=on" \
	-device virtio-blk-pci,drive=hd,addr=0x5 \
	-netdev tap,id=phone,ifname=phone0,script=no,downscript=no \
	-device virtio-net-pci,netdev=phone,mac=52:54:00:00:01:02,addr=0x3,romfile= \
	-netdev user,id=uplink,restrict=on \
	-device virtio-net-pci,netdev=uplink,mac=52:54:00:00:02:02,addr=0x4,romfile= \
	</dev/null >"$work/qemu.out" 2>&1 &
qemu_pid=$!
elapsed() { echo "$(date +%s.%N) - $t0" | bc; }

ready=""
while :; do
	if grep -qE 'msg=ready( |$)' "$log"; then
		ready=$(elapsed)
		break
	fi
	kill -0 "$qemu_pid" 2>/dev/null || die "qemu exited before peerlined was ready: $(cat "$work/qemu.out")"
	if grep -qE 'Kernel panic|Failed to start peerlined|peerlined.service: Failed' "$log"; then
		sleep 2 # let the reason reach the log
		die "boot failed (see the console log below)"
	fi
	[ "$(echo "$(elapsed) > $TIMEOUT" | bc)" = 1 ] && die "peerlined not ready after $TIMEOUT s"
	sleep 0.5
done
# qemu's own CPU time says how much emulation the boot took whatever else
# the machine was doing; wall time alone swings with the host's load.
cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$qemu_pid/stat")
printf '    peerlined READY %.1f s after qemu started (qemu used %s s of CPU)\n' "$ready" "$cpu"
grep -m1 -E 'msg=ready' "$log" | sed 's/^/    console: /'

stage "qemu-test: the phone asks for its line (busybox udhcpc in $ns)"
# The phone's side of DHCP, as in pkg/lab (Host.Lease): apply the lease
# (address, default route) and keep udhcpc's variables for the checks.
cat >"$work/udhcpc.sh" <<'EOF'
#!/bin/sh
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
EOF
chmod 0755 "$work/udhcpc.sh"
lease=$work/phone.lease
# READY comes after the DHCP server is listening, but under emulation an
# answer can take seconds: up to 3 rounds of 8 discovers 2 s apart, each
# round bounded by timeout.
for _ in 1 2 3; do
	rm -f "$lease"
	timeout 30 ip netns exec "$ns" env LEASEFILE="$lease" busybox udhcpc -i phone0 -f -q -n \
		-t 8 -T 2 -s "$work/udhcpc.sh" -O ntpsrv -O tftp >"$work/udhcpc.out" 2>&1 && [ -s "$lease" ] && break
done
[ -s "$lease" ] || die "the phone got no DHCP lease on the phone port (udhcpc: $(tr '\n' ' ' <"$work/udhcpc.out")); is phone_dhcp still on by default?"
lv() { sed -n "s/^$1=//p" "$lease"; }
phone_ip=$(lv ip) phone_mask=$(lv mask) gateway=$(lv router)
echo "    lease: ip=$phone_ip/$phone_mask router=$gateway dns=$(lv dns) ntp=$(lv ntpsrv) lease=$(lv lease) s"
# Line s is 10.0.s.0/30: the phone is .1, the Pi (the phone's gateway) .2.
[[ $phone_ip =~ ^10\.0\.([0-9]+)\.1$ ]] || die "the phone was offered '$phone_ip', not a line's phone address 10.0.s.1"
line=${BASH_REMATCH[1]}
[ "$phone_mask" = 30 ] || die "the phone was offered a /$phone_mask, not line $line's /30"
[ "$gateway" = "10.0.$line.2" ] || die "the phone was offered gateway '$gateway', not line $line's 10.0.$line.2"
printf '    line %s; lease applied %.1f s after qemu started\n' "$line" "$(elapsed)"

stage "qemu-test: phone $phone_ip pings its gateway $gateway"
ok=""
for _ in $(seq 30); do
	if ip netns exec "$ns" ping -c 1 -W 1 -q "$gateway" >/dev/null 2>&1; then
		ok=1
		break
	fi
	sleep 1
done
[ -n "$ok" ] || die "the phone ($phone_ip on eth0's wire) cannot ping its gateway $gateway: line $line is not up on the phone port"
ip netns exec "$ns" ping -c 3 -i 0.3 -W 2 -q "$gateway" | tail -n 2 | sed 's/^/    /'
printf '    first reply %.1f s after qemu started\n' "$(elapsed)"
stage "qemu-test: the phone opens the web console at http://$gateway/"
# The status page is open to anyone on the phone port, and on a first boot
# the first-use page offers to set the admin password (pkg/console).
page=""
for _ in $(seq 20); do
	page=$(ip netns exec "$ns" timeout 10 busybox wget -q -O - "http://$gateway/" 2>/dev/null) && break
	sleep 1
done
grep -q 'Manage this Pi' <<<"$page" || die "the phone got no console status page from http://$gateway/"
setup=$(ip netns exec "$ns" timeout 10 busybox wget -q -O - "http://$gateway/setup" 2>/dev/null) ||
	die "the first-use page http://$gateway/setup is not offered on the phone port of a fresh image"
grep -q 'name="password"' <<<"$setup" || die "http://$gateway/setup has no password form on a fresh image"
echo "    status page and first-use page served"
# Errors the daemon logged during the boot, for whoever reads the run.
if grep -q 'peerlined\[[0-9]*\]:.*level=ERROR' "$log"; then
	echo "    peerlined logged errors:"
	grep 'peerlined\[[0-9]*\]:.*level=ERROR' "$log" | sed -E 's/^.*level=ERROR /      /' | cut -c1-240
fi
if [ "${ANALYZE:-0}" = 1 ]; then
	stage "qemu-test: systemd-analyze in the guest (ANALYZE=1)"
	for _ in $(seq 240); do grep -q 'analyze-done' "$log" && break; sleep 0.5; done
	grep -q 'analyze-done' "$log" || echo "    no analysis within 120 s (see $log)"
	sed -n '/plimg-analyze\|sh\[[0-9]*\]:/p' "$log" | sed -E 's/^\[ *[0-9.]+\] sh\[[0-9]+\]: /    /' >"$work/analyze.txt"
	cat "$work/analyze.txt"
fi
stage_end
printf '==> qemu-test: PASS (READY in %.1f s; goal <= 60 s)\n' "$ready"
