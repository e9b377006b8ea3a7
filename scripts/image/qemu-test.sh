#!/usr/bin/env bash
# qemu-test.sh IMAGE — boot the SD image in qemu-system-aarch64 (-M virt,
# software emulation) and check from the host that peerlined reached READY
# and that a phone on the phone port reaches its gateway.
#
# The kernel, initrd and command line come out of the image's own FAT, the
# image is the virtio disk, so this boots what would be flashed (less the Pi
# firmware). NICs: eth0 = the phone port, a tap in a network namespace made
# here with the phone's 10.0.1.1/30; eth1 = the uplink, qemu user networking
# with restrict=on, so the guest reaches nothing outside. qemu itself runs in
# that namespace: nothing is added to the machine's root namespace.
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
need_cmd qemu-system-aarch64 mcopy sfdisk ip ping
[ -f "$img" ] || die "$img missing; run: make image"
[ -e /dev/net/tun ] || die "/dev/net/tun missing; load the tun module (modprobe tun)"
need_space "$BUILD_DIR" 1500

qemu_pid=""
cleanup() {
	local rc=$?
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$qemu_pid" 2>/dev/null || true
	fi
	ip netns del "$ns" 2>/dev/null || true
	rm -f "$work/test.img"
	if [ $rc -ne 0 ] && [ -f "$log" ]; then
		echo "---- last 40 lines of the serial console ($log) ----" >&2
		tail -n 40 "$log" >&2
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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
# The boot config a user would edit: node name; the uplink is eth1 (qemu
# has no Wi-Fi); line 1 fixed, since the simulated phone has a static
# address. Earlier settings of these keys go, ours are appended.
sed -i -E '/^[[:space:]]*(name|uplink_interface|lines)[[:space:]]*=/d' "$work/peerline.txt"
printf '\n# set by make qemu-test\nname = %s\nuplink_interface = eth1\nlines = 1\n' "$NODE_NAME" >>"$work/peerline.txt"
mcopy -o -i "$fat" "$work/peerline.txt" ::peerline.txt
# The Pi's serial console names mean nothing to -M virt; its PL011 is ttyAMA0.
# CMDLINE_EXTRA adds kernel parameters for experiments (e.g. "quiet").
cmdline="$(sed -E 's/(^| )console=[^ ]*//g; s/^ +//' "$work/cmdline.txt" | tr -d '\n') console=ttyAMA0${CMDLINE_EXTRA:+ $CMDLINE_EXTRA}"
echo "    cmdline: $cmdline"

stage "qemu-test: phone namespace $ns"
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" tuntap add dev phone0 mode tap
ip -n "$ns" addr add 10.0.1.1/30 dev phone0
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

stage "qemu-test: phone 10.0.1.1 pings its gateway 10.0.1.2"
ok=""
for _ in $(seq 30); do
	if ip netns exec "$ns" ping -c 1 -W 1 -q 10.0.1.2 >/dev/null 2>&1; then
		ok=1
		break
	fi
	sleep 1
done
[ -n "$ok" ] || die "the phone (10.0.1.1 on eth0's wire) cannot ping 10.0.1.2: line 1 is not up on the phone port"
ip netns exec "$ns" ping -c 3 -i 0.3 -W 2 -q 10.0.1.2 | tail -n 2 | sed 's/^/    /'
printf '    first reply %.1f s after qemu started\n' "$(elapsed)"
stage_end
printf '==> qemu-test: PASS (READY in %.1f s; goal <= 60 s)\n' "$ready"
