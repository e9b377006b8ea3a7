#!/usr/bin/env bash
# assemble.sh — turn build/rootfs.tar and peerline's arm64 binaries into the
# SD card image out/peerline-$VERSION-arm64.img (+ .zst, .sha256, .files).
#
# No loop devices and no mounts: each filesystem is written into a plain file
# (mkfs.vfat + mcopy, mksquashfs, mkfs.ext4 -d), the partition table with
# sfdisk on the image file, and the pieces copied in with dd conv=notrunc.
# Layout and the reasons behind it: board/README.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=scripts/image/lib.sh
. "$here/lib.sh"

BUILD_DIR=${BUILD_DIR:-$repo/build}
OUT_DIR=${OUT_DIR:-$repo/out}
VERSION=${VERSION:-$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo dev)}
# Every timestamp in the image is this one, so two builds of one commit are
# byte-identical.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}
export TZ=UTC
BOOT_MIB=${BOOT_MIB:-256}
DATA_MIB=${DATA_MIB:-256}
# Level 9: the squashfs inside is compressed already; -19 took 63 s for a
# file 1% smaller.
ZSTD_LEVEL=${ZSTD_LEVEL:-9}
# Disk identifier: the partitions are PARTUUID=5045524c-0N ("PERL"), which
# cmdline.txt and fstab name, so nothing depends on the kernel's device names.
DISKID=5045524c
# Units enabled in the image; the others in systemd/ (rendezvousd: it runs on
# the VPS) are installed but left off.
ENABLE_UNITS=${ENABLE_UNITS:-peerline-boot.service peerlined.service}
# Programs from bin/arm64 that go into the image: the daemon and its CLI.
# peerlab (the test lab) and rendezvousd (runs on the VPS) are not for the Pi.
IMAGE_CMDS=${IMAGE_CMDS:-peerlined peerline}

name=peerline-$VERSION-arm64
img=$OUT_DIR/$name.img
work=$BUILD_DIR/image
root=$work/root
boot=$work/boot
data=$work/data
rootfs_tar=$BUILD_DIR/rootfs.tar

t_all=$(date +%s.%N)
stage "image: checks"
need_root "unpacking the root filesystem with its owners and device nodes"
need_cmd mkfs.vfat mcopy mdir mksquashfs unsquashfs mkfs.ext4 debugfs sfdisk zstd systemctl bc cpio go
[ -e "$rootfs_tar" ] || die "$rootfs_tar missing; run: make rootfs"
ls "$repo"/bin/arm64/peerlined >/dev/null 2>&1 || die "bin/arm64/peerlined missing; run: make build-arm64"
file -b "$repo/bin/arm64/peerlined" 2>/dev/null | grep -q 'ARM aarch64.*statically linked' ||
	{ command -v file >/dev/null && die "bin/arm64/peerlined is not a static arm64 binary; run: make build-arm64"; }
mkdir -p "$OUT_DIR" "$work"
need_space "$BUILD_DIR" 2500
need_space "$OUT_DIR" 1500
echo "    version $VERSION, SOURCE_DATE_EPOCH $SOURCE_DATE_EPOCH, rootfs $(readlink -f "$rootfs_tar")"

# out/ keeps one image: each is ~900 MB with its compressed copy.
find "$OUT_DIR" -maxdepth 1 -name 'peerline-*-arm64.*' ! -name "$name.*" -delete

stage "image: unpack rootfs"
rm -rf "$root" "$boot" "$data"
mkdir -p "$root" "$boot" "$data"
tar -C "$root" --numeric-owner -xpf "$rootfs_tar"

stage "image: boot partition files (firmware, kernel, initrd, device trees)"
"$here/firmware.sh" "$boot"
kver=$(ls "$root/boot" | sed -n 's/^vmlinuz-//p' | sort -V | tail -n1)
[ -n "$kver" ] || die "no /boot/vmlinuz-* in $rootfs_tar; is linux-image-arm64 in board/rpi/packages?"
[ -f "$root/boot/initrd.img-$kver" ] || die "no /boot/initrd.img-$kver in $rootfs_tar; the rootfs build's update-initramfs failed"
cp "$root/boot/vmlinuz-$kver" "$boot/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$boot/initrd.img"
# Kernels from 7.x keep the device trees beside the modules; older ones
# (bookworm, trixie's 6.12) under /usr/lib/linux-image-*.
dtbdir=$root/usr/lib/modules/$kver/dtb/broadcom
[ -d "$dtbdir" ] || dtbdir=$root/usr/lib/linux-image-$kver/broadcom
[ -d "$dtbdir" ] || die "no device trees in /usr/lib/modules/$kver/dtb/broadcom or /usr/lib/linux-image-$kver/broadcom"
# Pi 3 (B, B+, A+, CM3), Pi 4 (B, 400, CM4), Pi 5 (C0 and D0 steppings).
cp "$dtbdir"/bcm2837-rpi-*.dtb "$dtbdir"/bcm2711-rpi-*.dtb "$dtbdir"/bcm2712-*.dtb "$boot/" ||
	die "the Pi device trees are missing from linux-image-$kver"
cp "$repo"/board/rpi/{config.txt,cmdline.txt,cmdline-pi5.txt} "$boot/"
# Pi 5 with the D0 stepping: the firmware loads bcm2712-rpi-5-b.dtb and, on a
# D0 board, applies overlays/bcm2712d0.dtbo (board/README.md). Ours is
# derived from the kernel's own C0 and D0 trees (their difference as
# property assignments, proved by applying it), so the D0 board gets
# exactly bcm2712-d-rpi-5-b.dtb whichever of the two the firmware loads.
mkdir -p "$boot/overlays"
(cd "$repo" && go build -o "$work/dtdiff" ./cmd/dtdiff) || die "go build ./cmd/dtdiff failed"
"$work/dtdiff" -compatible brcm,bcm2712 -o "$boot/overlays/bcm2712d0.dtbo" \
	"$boot/bcm2712-rpi-5-b.dtb" "$boot/bcm2712-d-rpi-5-b.dtb" | sed 's/^/    bcm2712d0.dtbo sets /' ||
	die "cannot derive the Pi 5 D0 overlay from bcm2712-rpi-5-b.dtb and bcm2712-d-rpi-5-b.dtb"
[ -s "$boot/overlays/bcm2712d0.dtbo" ] || die "no overlays/bcm2712d0.dtbo written"
if [ -f "$repo/board/rpi/peerline.txt" ]; then
	cp "$repo/board/rpi/peerline.txt" "$boot/peerline.txt"
else
	# board/rpi/peerline.txt (the documented example) is written elsewhere;
	# until it exists the image carries this minimal one.
	printf '%s\n' '# peerline boot config: see board/rpi/peerline.txt in the source.' 'name = peerline' >"$boot/peerline.txt"
fi
echo "    kernel $kver, $(du -sm "$boot" | cut -f1) MiB on the boot partition"

# Before anything slow: every Pi must reach its root filesystem with this
# initramfs (a regulator or pin driver missing from MODULES=list defers the
# SD controller forever). Checked on the device trees the card carries.
"$here/bootcheck.sh" "$boot/initrd.img" "$root/usr/lib/modules/$kver" "$boot"/*.dtb

stage "image: root filesystem contents"
# The kernel, initrd and device trees live on the boot partition only: the
# copies in the root (/boot, and 50 MB vmlinuz + 119 MB of every arm64
# board's device trees beside the modules) would only make it bigger.
rm -rf "${root:?}"/boot/* "$root/usr/lib/linux-image-$kver" "$root"/vmlinuz* "$root"/initrd.img* \
	"$root/usr/lib/modules/$kver/vmlinuz" "$root/usr/lib/modules/$kver/dtb" "$root/usr/lib/modules/$kver/System.map"
mkdir -p "$root/boot/firmware" "$root/data"
for c in $IMAGE_CMDS; do
	[ -f "$repo/bin/arm64/$c" ] || { [ "$c" = peerlined ] && die "bin/arm64/$c missing"; continue; }
	install -m 0755 "$repo/bin/arm64/$c" "$root/usr/bin/$c"
done
# A unit whose program is not in the image (rendezvousd) stays out of it.
for u in "$repo"/systemd/*.service; do
	exe=$(sed -n 's|^ExecStart=[-@!+]*\([^ ]*\).*|\1|p' "$u" | head -n1)
	[ -z "$exe" ] || [ -e "$root$exe" ] || continue
	install -m 0644 "$u" "$root/usr/lib/systemd/system/"
done
# Files of the image that are not in Debian's packages.
cp -r --no-preserve=ownership "$repo/rootfs/etc/fstab" "$repo/rootfs/etc/systemd" "$root/etc/"
# The daemon's own config lives on /data; the unit and the CLI may still
# look under /etc.
mkdir -p "$root/etc/peerline" "$root/usr/share/doc/peerline"
ln -sfn /data/peerline/peerlined.json "$root/etc/peerline/peerlined.json"
cp "$repo/rootfs/etc/peerline/README.md" "$root/usr/share/doc/peerline/config.md"
cp "$repo/rootfs/etc/peerline/peerlined.json" "$root/usr/share/doc/peerline/peerlined.example.json"
# The boot-config step writes the Wi-Fi settings to /run (the root is read-only).
mkdir -p "$root/etc/wpa_supplicant"
ln -sfn /run/peerline/wpa_supplicant-wlan0.conf "$root/etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
# peerline's logs on the serial console too: the boot test reads READY
# there, and so does anyone with a USB-serial cable on a Pi that does not
# come up (a wrong peerline.txt shows there as well).
for u in peerlined peerline-boot; do
	mkdir -p "$root/usr/lib/systemd/system/$u.service.d"
	printf '[Service]\nStandardOutput=journal+console\n' >"$root/usr/lib/systemd/system/$u.service.d/10-console.conf"
done
echo peerline >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpeerline\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
enable=(systemd-networkd.service systemd-resolved.service systemd-timesyncd.service)
for u in $ENABLE_UNITS; do
	[ -f "$root/usr/lib/systemd/system/$u" ] && enable+=("$u") || echo "    note: $u not in systemd/, not enabled"
done
systemctl --root="$root" --quiet enable "${enable[@]}" 2>&1 | grep -v '^Created symlink' || true
for u in "${enable[@]}"; do
	systemctl --root="$root" --quiet is-enabled "$u" >/dev/null || die "could not enable $u in the image"
done
# wpa_supplicant for wlan0 starts when wlan0 appears, not from
# multi-user.target: enabled the usual way, a Pi without working Wi-Fi (or
# qemu) waits 90 s for the device, and network.target, which peerlined
# follows, waits with it.
mkdir -p "$root/etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants"
ln -sfn /usr/lib/systemd/system/wpa_supplicant@.service \
	"$root/etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants/wpa_supplicant@wlan0.service"
# Off: the D-Bus wpa_supplicant (we run the per-interface one), and the
# package-maintenance and LVM timers, which have nothing to do on a
# read-only root.
disable=(wpa_supplicant.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service)
for u in "${disable[@]}"; do
	systemctl --root="$root" --quiet disable "$u" 2>/dev/null || true
	! systemctl --root="$root" --quiet is-enabled "$u" 2>/dev/null || die "could not disable $u in the image"
done
echo "    enabled: ${enable[*]} wpa_supplicant@wlan0 (when wlan0 appears); disabled: ${disable[*]}"
# Boot time. Under emulation every process and mount costs a visible share
# of two busy vCPUs, and on a Pi 3 it still costs; each of these does
# nothing for a headless appliance (measurements: board/README.md).
#  - gettys: root's password is locked and there is no other account, so a
#    login prompt (HDMI tty1, the serial console) can never be used;
#  - kernel debug/trace, hugepages, mqueue, configfs, fuse, binfmt_misc,
#    pstore (the Pi has no pstore backend, no EFI) and drm's early modprobe
#    (no display; vc4 still loads from udev when a Pi has HDMI);
#  - the journal's message catalog and update-done: /var is a tmpfs, so they
#    rebuilt the catalog and stamped /var on every boot.
# logind stays (the Pi 5's power button is a gpio-keys KEY_POWER it turns
# into a clean shutdown), and so do fstrim.timer (/data on the SD card) and
# the tmpfiles cleanup.
mask=(getty@.service serial-getty@.service console-getty.service
	sys-kernel-debug.mount sys-kernel-tracing.mount dev-hugepages.mount dev-mqueue.mount
	sys-kernel-config.mount sys-fs-fuse-connections.mount proc-sys-fs-binfmt_misc.automount
	modprobe@drm.service modprobe@efi_pstore.service modprobe@configfs.service modprobe@fuse.service
	systemd-pstore.service systemd-journal-catalog-update.service systemd-update-done.service)
systemctl --root="$root" --quiet disable getty@tty1.service systemd-pstore.service 2>/dev/null || true
for u in "${mask[@]}"; do ln -sfn /dev/null "$root/etc/systemd/system/$u"; done
# multi-user, not Debian's graphical.target: there is no display manager.
ln -sfn /usr/lib/systemd/system/multi-user.target "$root/etc/systemd/system/default.target"
# Generators run before systemd starts anything, all at once; these find
# nothing to do here (no SysV scripts but dbus's, which has a unit; no
# rc.local, sshd, TPM, hibernation, offline updates; an MBR card whose root
# is on the command line), and the gettys are gone (above). Kept: fstab,
# debug (systemd.mask=/wants= on the kernel command line) and run.
for g in systemd-sysv-generator systemd-rc-local-generator systemd-ssh-generator systemd-tpm2-generator \
	systemd-hibernate-resume-generator systemd-system-update-generator systemd-gpt-auto-generator \
	systemd-getty-generator; do
	[ -e "$root/usr/lib/systemd/system-generators/$g" ] || die "$g is not in the root filesystem; update the list in $0"
	mkdir -p "$root/etc/systemd/system-generators"
	ln -sfn /dev/null "$root/etc/systemd/system-generators/$g"
done
echo "    masked: ${mask[*]}; default target multi-user.target"
# resolved's stub listener (127.0.0.53:53, 127.0.0.54:53) takes port 53 on
# all interfaces as far as the kernel's bind check goes, so peerlined's DNS
# forwarder for the phones, bound to eth0's :53, failed with "address
# already in use". The stub is off (/etc/systemd/resolved.conf.d), and
# resolv.conf lists the uplink's servers themselves, which is what both
# peerlined's resolver and its forwarder read.
ln -sfn ../run/systemd/resolve/resolv.conf "$root/etc/resolv.conf"
# Empty machine-id: systemd makes a fresh one each boot on the read-only root
# instead of every card sharing the build's.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"

stage "image: data partition contents"
# Empty: peerline-boot.service makes /data/peerline and the daemon's config
# from peerline.txt on the first boot, and the daemon its node key (0600).
# No key or config is ever in the image.

# Clamp every timestamp: files we just wrote carry today's date.
for d in "$root" "$boot" "$data"; do
	find "$d" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
done

stage "image: boot filesystem (FAT32, mkfs.vfat + mcopy)"
rm -f "$work/boot.vfat"
mkfs.vfat -F 32 -n PEERLINE -i "$DISKID" --invariant -C "$work/boot.vfat" $((BOOT_MIB * 1024)) >/dev/null
# Sorted, so the directory order does not depend on readdir.
# shellcheck disable=SC2046 # file names are ours, without spaces
(cd "$boot" && mcopy -s -m -o -i "$work/boot.vfat" $(LC_ALL=C ls) ::/)

stage "image: root filesystem (squashfs, zstd level 19)"
rm -f "$work/root.sqfs"
mksquashfs "$root" "$work/root.sqfs" -comp zstd -Xcompression-level 19 -b 256K -noappend \
	-no-progress -quiet 2>&1 |
	grep -v 'Unrecognised xattr prefix system.posix_acl' || true
[ -s "$work/root.sqfs" ] || die "mksquashfs wrote nothing"

stage "image: data filesystem (ext4, mkfs.ext4 -d)"
rm -f "$work/data.ext4"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L peerline-data \
	-U 5045524c-0003-4000-8000-000000000003 \
	-E root_owner=0:0,hash_seed=5045524c-0003-4000-8000-000000000004,lazy_itable_init=0,lazy_journal_init=0 \
	-d "$data" "$work/data.ext4" "${DATA_MIB}M" >/dev/null
# mkfs.ext4 -d copies each file's ctime (and atime), which touch cannot set:
# pin them, or every build differs.
(cd "$data" && find . -printf '%P\n') | while read -r p; do
	for f in atime ctime mtime; do echo "set_inode_field /$p $f @$SOURCE_DATE_EPOCH"; done
done >"$work/data.debugfs"
debugfs -w -f "$work/data.debugfs" "$work/data.ext4" >/dev/null 2>&1 || die "debugfs could not pin the data partition's timestamps"

stage "image: partition table (sfdisk) and partitions (dd)"
mib() { echo $((($(stat -c %s "$1") + 1048575) / 1048576)); }
root_mib=$(mib "$work/root.sqfs")
# Room for a larger root in an update written in place.
root_mib=$(((root_mib + 63) / 64 * 64))
boot_start=4
root_start=$((boot_start + BOOT_MIB))
data_start=$((root_start + root_mib))
total=$((data_start + DATA_MIB))
rm -f "$img.tmp"
truncate -s "${total}M" "$img.tmp"
sfdisk --quiet --no-reread --no-tell-kernel "$img.tmp" <<EOF
label: dos
label-id: 0x$DISKID
unit: sectors
start=$((boot_start * 2048)), size=$((BOOT_MIB * 2048)), type=c, bootable
start=$((root_start * 2048)), size=$((root_mib * 2048)), type=83
start=$((data_start * 2048)), size=$((DATA_MIB * 2048)), type=83
EOF
dd if="$work/boot.vfat" of="$img.tmp" bs=1M seek=$boot_start conv=notrunc,sparse status=none
dd if="$work/root.sqfs" of="$img.tmp" bs=1M seek=$root_start conv=notrunc,sparse status=none
dd if="$work/data.ext4" of="$img.tmp" bs=1M seek=$data_start conv=notrunc,sparse status=none
mv "$img.tmp" "$img"

stage "image: file list"
# What is in the image, for "two builds give the same files" and for review.
{
	echo "# partitions"
	sfdisk -d "$img" | sed "s|$img|IMG|"
	echo "# boot (FAT)"
	mdir -/ -a -i "$img@@${boot_start}M" :: | grep -vE '^ *(Volume|Directory for|$)|files|bytes free'
	echo "# root (squashfs)"
	unsquashfs -lln "$work/root.sqfs" | sed -n 's|squashfs-root||p'
	echo "# data (ext4)"
	(cd "$data" && find . -printf '%M %U/%G %s %TY-%Tm-%Td %TH:%TM %p\n' | LC_ALL=C sort -k6)
} >"$OUT_DIR/$name.files"

stage "image: compress (zstd -$ZSTD_LEVEL) and checksum"
rm -f "$img.zst"
zstd -q -T0 -"$ZSTD_LEVEL" "$img" -o "$img.zst"
(cd "$OUT_DIR" && sha256sum "$name.img" "$name.img.zst" >"$name.img.sha256")
stage_end

printf '==> image: done in %.0f s\n' "$(echo "$(date +%s.%N) - $t_all" | bc)"
printf '    %-24s %s MiB (allocated %s MiB)\n' "$name.img" "$(($(stat -c %s "$img") / 1048576))" "$(du -m "$img" | cut -f1)"
printf '    %-24s %s MiB\n' "$name.img.zst" "$(du -m "$img.zst" | cut -f1)"
printf '    partitions: boot %s MiB FAT32, root %s MiB squashfs (%s MiB used), data %s MiB ext4\n' \
	"$BOOT_MIB" "$root_mib" "$(mib "$work/root.sqfs")" "$DATA_MIB"
sed 's/^/    /' "$OUT_DIR/$name.img.sha256"
ln -sfn "$name.img" "$OUT_DIR/peerline-arm64.img"
