#!/usr/bin/env bash
# qemu-pi.sh MACHINE IMAGE — boot the SD image in qemu's Raspberry Pi machine
# model (raspi3b or raspi4b) with the kernel, initramfs, device tree and
# command line the Pi firmware would pick from the card's config.txt.
#
#   raspi3b: must reach peerlined READY (the Pi 3's SD host, clocks and pins
#            are all emulated; the phone port is a USB network adapter).
#   raspi4b: must get as far as the SD controller (emmc2) probing; how far
#            it gets beyond that is reported (board/README.md: why not READY).
#
# What stands in for the Pi firmware (start.elf, which qemu does not run):
# firmware_pick below reads config.txt as the firmware does for that board
# (model filters [all] [none] [pi3] [pi3+] [pi4] [pi400] [cm4] [pi5] …, later
# settings win; kernel=, initramfs FILE ADDR, cmdline=, device_tree=,
# upstream_kernel=, os_prefix=) and names the DTB the firmware chooses for
# the board (upstream name with upstream_kernel=1; os_prefix "upstream/" is
# dropped when the kernel and DTB are not there, as the firmware does).
# qemu then loads those files like the firmware: the kernel, the initramfs
# after it, the DTB with /chosen (bootargs, initrd) and /memory filled in.
# Not emulated: the firmware's own additions to the command line and device
# tree (coherent_pool, 8250.nr_uarts, MAC and serial number, the emmc2
# dma-ranges fix-up for BCM2711 B0/C0, overlays), the GPU memory split, and
# the firmware's reading of the FAT. A config.txt filter this script does
# not know fails the test rather than being guessed.
#
# QEMU: the host's qemu-system-aarch64 if it has the machine (raspi4b needs
# QEMU 9 or newer; Debian 12 has 7.2), else QEMU from <codename>-backports,
# downloaded and unpacked under $BUILD_DIR/qemu-backports without being
# installed (its qemu-user-static would replace the host's and register
# binfmt handlers, which the rootfs build manages itself).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=scripts/image/lib.sh
. "$here/lib.sh"

machine=${1:?usage: qemu-pi.sh raspi3b|raspi4b IMAGE}
img=${2:-$repo/out/peerline-arm64.img}
BUILD_DIR=${BUILD_DIR:-$repo/build}
NODE_NAME=${NODE_NAME:-qemu-$machine}
work=$BUILD_DIR/qemu-$machine
ns=plpi-$$
log=$work/console.log
MAKE_TARGET=qemu-pi

case $machine in
raspi3b)
	# The firmware's view of a Pi 3 B: its filters and DTB names.
	filters="pi3"
	dtb_upstream=bcm2837-rpi-3-b.dtb dtb_downstream=bcm2710-rpi-3-b.dtb
	TIMEOUT=${TIMEOUT:-900}
	;;
raspi4b)
	filters="pi4"
	dtb_upstream=bcm2711-rpi-4-b.dtb dtb_downstream=bcm2711-rpi-4-b.dtb
	TIMEOUT=${TIMEOUT:-420}
	;;
*) die "unknown machine $machine (raspi3b or raspi4b; the Pi 5 has no qemu model: make bootcheck is its check)" ;;
esac

# firmware_pick CONFIG: sets fw_kernel, fw_initrd, fw_cmdline, fw_dtb, fw_64.
firmware_pick() {
	local cfg=$1 active=1 line key val
	fw_kernel="" fw_initrd="" fw_cmdline=cmdline.txt fw_dtb="" fw_64=0 fw_upstream=0 fw_prefix=""
	local prefix_set=0
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%%#*}
		line=$(echo "$line" | sed -E 's/^[[:space:]]+|[[:space:]]+$//g')
		[ -n "$line" ] || continue
		if [[ $line =~ ^\[(.*)\]$ ]]; then
			case ${BASH_REMATCH[1]} in
			all) active=1 ;;
			none) active=0 ;;
			pi0 | pi0w | pi02 | pi1 | pi2 | pi3 | pi3+ | pi4 | pi400 | cm4 | cm4s | pi5 | pi500 | cm5)
				active=0
				for f in $filters; do [ "$f" = "${BASH_REMATCH[1]}" ] && active=1; done
				;;
			*) die "config.txt filter [${BASH_REMATCH[1]}] is not emulated by $0; extend firmware_pick" ;;
			esac
			continue
		fi
		[ $active = 1 ] || continue
		if [[ $line =~ ^initramfs[[:space:]]+([^[:space:]]+) ]]; then
			fw_initrd=${BASH_REMATCH[1]}
			continue
		fi
		key=${line%%=*} val=${line#*=}
		case $key in
		kernel) fw_kernel=$val ;;
		cmdline) fw_cmdline=$val ;;
		device_tree) fw_dtb=$val ;;
		arm_64bit) fw_64=$val ;;
		upstream_kernel) fw_upstream=$val ;;
		os_prefix) fw_prefix=$val prefix_set=1 ;;
		esac
	done <"$cfg"
	[ "$fw_64" = 1 ] || die "config.txt does not set arm_64bit=1; the image's kernel is arm64"
	if [ -z "$fw_dtb" ]; then
		if [ "$fw_upstream" = 1 ]; then fw_dtb=$dtb_upstream; else fw_dtb=$dtb_downstream; fi
	fi
	[ -n "$fw_kernel" ] || fw_kernel=kernel8.img
	if [ "$fw_upstream" = 1 ] && [ $prefix_set = 0 ]; then fw_prefix=upstream/; fi
	# The firmware drops a prefix under which the kernel or DTB is missing.
	if [ -n "$fw_prefix" ] && ! { mdir -b -i "$fat" "::$fw_prefix$fw_kernel" >/dev/null 2>&1 && mdir -b -i "$fat" "::$fw_prefix$fw_dtb" >/dev/null 2>&1; }; then
		fw_prefix=""
	fi
}

stage "qemu-$machine: checks"
need_root "the phone's network namespace and tap"
need_cmd mcopy mdir sfdisk ip busybox timeout truncate
[ -f "$img" ] || die "$img missing; run: make image"
[ -e /dev/net/tun ] || die "/dev/net/tun missing; load the tun module (modprobe tun)"
need_space "$BUILD_DIR" 1500

# QEMU with this machine model.
qemu=${QEMU_SYSTEM:-qemu-system-aarch64}
qemu_data=()
if ! "$qemu" -M help 2>/dev/null | grep -q "^$machine "; then
	qdir=$BUILD_DIR/qemu-backports
	if [ ! -x "$qdir/root/usr/bin/qemu-system-aarch64" ]; then
		# shellcheck disable=SC1091
		codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
		echo "    $qemu has no $machine; fetching QEMU from $codename-backports into ${qdir#"$repo"/} (not installed)"
		mkdir -p "$qdir/apt/lists/partial" "$qdir/apt/cache/archives/partial" "$qdir/debs" "$qdir/root"
		echo "deb $(debian_mirror) $codename-backports main" >"$qdir/apt/sources.list"
		opts=(-o Dir::State::Lists="$qdir/apt/lists" -o Dir::State::status=/dev/null
			-o Dir::Etc::SourceList="$qdir/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
			-o Dir::Cache="$qdir/apt/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
		apt-get -qq "${opts[@]}" update || die "apt-get update for $codename-backports failed"
		(cd "$qdir/debs" && apt-get -qq "${opts[@]}" download qemu-system-arm qemu-system-common qemu-system-data) ||
			die "no qemu-system-arm in $codename-backports; install QEMU 9 or newer and set QEMU_SYSTEM"
		for d in "$qdir"/debs/*.deb; do dpkg-deb -x "$d" "$qdir/root"; done
	fi
	qemu=$qdir/root/usr/bin/qemu-system-aarch64
	qemu_data=(-L "$qdir/root/usr/share/qemu")
	# Its own modules, not the host's older ones.
	export QEMU_MODULE_DIR=$qdir/root/usr/lib/x86_64-linux-gnu/qemu
	"$qemu" -M help | grep -q "^$machine " || die "$qemu has no machine $machine either"
fi
echo "    $("$qemu" --version | head -n1)"

qemu_cleanup_on_exit

stage "qemu-$machine: the files the Pi firmware would load (config.txt)"
rm -rf "$work"
mkdir -p "$work"
cp --sparse=always "$img" "$work/test.img"
# qemu's SD card model wants a power-of-two size; the partitions end
# before, so growing the copy changes nothing the Pi would see.
size=$(stat -c %s "$work/test.img")
p2=$((64 * 1024 * 1024))
while [ $p2 -lt "$size" ]; do p2=$((p2 * 2)); done
truncate -s "$p2" "$work/test.img"
boot_off=$(sfdisk -d "$work/test.img" | awk -F'[=,]' '/start=/ {print $2 * 512; exit}')
[ -n "$boot_off" ] || die "no partition table in $img"
fat="$work/test.img@@$boot_off"
mcopy -n -i "$fat" ::config.txt "$work/config.txt" || die "no config.txt on the boot partition"
firmware_pick "$work/config.txt"
echo "    $machine: kernel=$fw_prefix$fw_kernel initramfs=$fw_prefix$fw_initrd cmdline=$fw_prefix$fw_cmdline dtb=$fw_prefix$fw_dtb"
for f in "$fw_kernel" "$fw_initrd" "$fw_cmdline" "$fw_dtb"; do
	[ -n "$f" ] || continue
	mcopy -n -i "$fat" "::$fw_prefix$f" "$work/$(basename "$f")" || die "$fw_prefix$f (named by config.txt for $machine) is not on the boot partition"
done
if [ "$machine" = raspi4b ]; then
	# qemu disables the BCM2711 parts it does not model in the DTB it is
	# given (PCIe, RNG, thermal, GENET: its warnings in qemu.out). QEMU
	# 10 does not model the HDMI block at 0x7ef00000 either, and the
	# Debian kernel's probes of its interrupt controller and DDC I2C
	# buses fault there (a kernel panic in brcmstb_l2_intc_probe, then in
	# brcmstb_i2c_probe). Disable those nodes too, for qemu only: they
	# have nothing to do with the SD card.
	need_cmd fdtput fdtget
	dtb=$work/$(basename "$fw_dtb")
	for n in clock@7ef00000 interrupt-controller@7ef00100 hdmi@7ef00700 i2c@7ef04500 hdmi@7ef05700 i2c@7ef09500; do
		fdtget "$dtb" "/soc/$n" compatible >/dev/null 2>&1 || continue
		fdtput -t s "$dtb" "/soc/$n" status disabled
		echo "    qemu only: disabled /soc/$n ($(fdtget "$dtb" "/soc/$n" compatible | cut -d' ' -f1)) in the DTB"
	done
	# The SD card's supplies switch through GPIOs of the firmware's GPIO
	# expander (raspberrypi,firmware-gpio), which asks the VideoCore
	# firmware over the mailbox; qemu answers those requests with an
	# error, so both regulators fail to probe (-EIO) and emmc2 waits for
	# them forever, with the right modules in the initramfs or not. For
	# qemu only, the card's power (regulator-sd-vcc) becomes always-on and
	# its I/O voltage (regulator-sd-io-1v8) a fixed 3.3 V: no GPIO left.
	if [ "${PI4_SD_GPIO:-}" != keep ] && fdtget "$dtb" /regulator-sd-vcc compatible >/dev/null 2>&1; then
		fdtput -d "$dtb" /regulator-sd-vcc gpio
		fdtput -t s "$dtb" /regulator-sd-io-1v8 compatible regulator-fixed
		fdtput -d "$dtb" /regulator-sd-io-1v8 gpios
		fdtput -d "$dtb" /regulator-sd-io-1v8 states
		fdtput -t i "$dtb" /regulator-sd-io-1v8 regulator-min-microvolt 3300000
		echo "    qemu only: /regulator-sd-vcc without its firmware GPIO, /regulator-sd-io-1v8 a fixed 3.3 V (PI4_SD_GPIO=keep: unchanged)"
	fi
fi
# The boot config a user would edit: this node's name. Uplink and phone
# settings stay as shipped: there is no uplink to give (no Wi-Fi, one NIC),
# so peerline-boot reports the missing Wi-Fi settings and fails, as on an
# unconfigured card, and peerlined starts with the defaults (the name
# included) and must still reach READY.
mcopy -n -i "$fat" ::peerline.txt "$work/peerline.txt"
sed -i -E '/^[[:space:]]*name[[:space:]]*=/d' "$work/peerline.txt"
printf '\n# set by make qemu-pi\nname = %s\n' "$NODE_NAME" >>"$work/peerline.txt"
mcopy -o -i "$fat" "$work/peerline.txt" ::peerline.txt
# Only for emulation: kpti=0, as in qemu-test.sh (board/README.md); and a
# longer wait for devices. qemu runs the Pi 3's four cores on whatever the
# host has left, and on a loaded 2-core host udev's coldplug started only
# 2 minutes into userspace, so systemd's default 90 s device timeout failed
# /data, the boot partition and eth0, and with them peerlined: an artefact
# of the emulation (a Pi 3 has them within seconds), not of the image.
QEMU_CMDLINE=${QEMU_CMDLINE-kpti=0 systemd.default_device_timeout_sec=900}
cmdline="$(tr -d '\n' <"$work/$(basename "$fw_cmdline")")${QEMU_CMDLINE:+ $QEMU_CMDLINE}"
echo "    cmdline: $cmdline"

stage "qemu-$machine: phone namespace $ns"
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" tuntap add dev phone0 mode tap
ip -n "$ns" link set phone0 up

stage "qemu-$machine: boot (timeout ${TIMEOUT} s)"
: >"$log"
# Serial ports: the first is the PL011 (ttyAMA0; Bluetooth on a real Pi),
# the second the mini UART (ttyS1 with the upstream device trees), where
# cmdline.txt puts the console.
net=()
if [ "$machine" = raspi3b ]; then
	# The Pi 3 B's Ethernet is a LAN9514 on USB, which qemu does not
	# model; a USB network adapter takes its place as eth0 (a universally
	# administered MAC, or usbnet names it usb0).
	net=(-netdev tap,id=phone,ifname=phone0,script=no,downscript=no -device usb-net,netdev=phone,mac=00:16:3e:00:01:02)
fi
t0=$(date +%s.%N)
ip netns exec "$ns" "$qemu" "${qemu_data[@]}" -M "$machine" \
	-display none -monitor none -serial "file:$work/pl011.log" -serial "file:$log" -no-reboot \
	-kernel "$work/$(basename "$fw_kernel")" -initrd "$work/$(basename "$fw_initrd")" -dtb "$work/$(basename "$fw_dtb")" \
	-append "$cmdline" -drive "if=sd,file=$work/test.img,format=raw,snapshot=on" "${net[@]}" \
	</dev/null >"$work/qemu.out" 2>&1 &
qemu_pid=$!
elapsed() { echo "$(date +%s.%N) - $t0" | bc; }
mark() { # mark KEY LABEL REGEX: print when REGEX first shows up on the console
	local v="seen_$1"
	[ -z "${!v:-}" ] || return 0
	if grep -aqE "$3" "$log" "$work/pl011.log" 2>/dev/null; then
		printf -v "$v" '%s' "$(elapsed)"
		printf '    %-24s %6.1f s  %s\n' "$2" "${!v}" "$(grep -ahE -m1 "$3" "$log" "$work/pl011.log" | head -n1 | tr -d '\r' | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-100)"
	fi
}
ready=""
while :; do
	mark kernel "kernel started" 'Booting Linux on physical CPU'
	mark sdhost "SD controller probed" 'mmc[0-9]+: SDHCI controller on fe340000|sdhost-bcm2835 .*: loaded'
	mark card "card found" 'mmc[0-9]+: new .*(SD|SDHC|SDXC|MMC) card'
	mark partitions "partitions" 'mmcblk[0-9]+: p1 p2 p3'
	mark systemd "root mounted (systemd)" 'systemd\[1\]: systemd [0-9]+'
	mark eth0 "eth0 (phone port)" 'usb.*eth0: register|cdc_ether.*eth0|rndis_host.*eth0'
	if grep -aqE 'msg=ready( |$)' "$log"; then
		ready=$(elapsed)
		break
	fi
	kill -0 "$qemu_pid" 2>/dev/null || break
	if grep -aqE 'Kernel panic|Gave up waiting for root|peerlined.service: Failed|Dependency failed for .*peerlined' "$log"; then
		sleep 2
		break
	fi
	[ "$(echo "$(elapsed) > $TIMEOUT" | bc)" = 1 ] && break
	sleep 1
done
cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$qemu_pid/stat" 2>/dev/null || echo "?")
if [ -n "$ready" ]; then
	printf '    peerlined READY %.1f s after qemu started (qemu used %s s of CPU)\n' "$ready" "$cpu"
	grep -a -m1 -E 'msg=ready' "$log" | sed 's/^/    console: /'
fi
grep -ahE 'Gave up waiting for root|deferred probe pending|probe of .* failed' "$log" | head -n 5 | sed 's/^/    console: /' || true
stage_end
case $machine in
raspi3b)
	[ -n "$ready" ] || die "raspi3b: peerlined not READY within $TIMEOUT s"
	printf '==> qemu-raspi3b: PASS (READY in %.1f s)\n' "$ready"
	;;
raspi4b)
	# The bar is emmc2 probing: with its supplies' drivers in the
	# initramfs it binds; without them it is deferred for ever. QEMU 10
	# does not put the if=sd card on emmc2 (board/README.md), so the boot
	# then stops at "Gave up waiting for root file system device".
	[ -n "${seen_sdhost:-}" ] || die "raspi4b: the SD controller (emmc2) did not probe within $TIMEOUT s"
	if [ -n "$ready" ]; then
		printf '==> qemu-raspi4b: PASS (READY in %.1f s)\n' "$ready"
	elif [ -n "${seen_partitions:-}" ]; then
		printf '==> qemu-raspi4b: PASS (emmc2 probed at %.1f s, partitions at %.1f s; READY not reached)\n' "$seen_sdhost" "$seen_partitions"
	else
		printf '==> qemu-raspi4b: PASS (emmc2 probed at %.1f s; no card on it under qemu, so no root device)\n' "$seen_sdhost"
	fi
	;;
esac
