#!/usr/bin/env bash
# bootcheck.sh INITRD MODULES_DIR DTB... — fail unless the initramfs holds
# every driver each Pi needs to reach its root filesystem.
#
# For each device tree (the ones on the card's boot partition), cmd/bootcheck
# walks from the SD controller named in board/rpi/rootdev through its
# supplies, pin controllers, GPIOs, clocks, interrupt parents, power
# domains, resets and parent buses to compatible strings, maps them to
# drivers with the kernel's modules.alias and modules.builtin.modinfo, and
# names every module that is neither built in nor in INITRD (board/README.md).
# The full report goes to $BUILD_DIR/bootcheck.txt.
#
# Without arguments it checks the cached root filesystem (build/rootfs.tar)
# and the device trees of its kernel: make bootcheck, no image needed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=scripts/image/lib.sh
. "$here/lib.sh"

BUILD_DIR=${BUILD_DIR:-$repo/build}
need_cmd go zstd cpio
mkdir -p "$BUILD_DIR"
tmp=$(mktemp -d "$BUILD_DIR/.bootcheck.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [ $# -eq 0 ]; then
	tar=$BUILD_DIR/rootfs.tar
	[ -e "$tar" ] || die "$tar missing; run: make rootfs"
	stage "bootcheck: unpack the kernel's modules index, device trees and initrd from $(readlink -f "$tar")"
	tar -C "$tmp" -xf "$tar" --wildcards --no-anchored './boot/initrd.img-*' \
		'./usr/lib/modules/*/modules.alias' './usr/lib/modules/*/modules.dep' \
		'./usr/lib/modules/*/modules.builtin' './usr/lib/modules/*/modules.builtin.modinfo' \
		'./usr/lib/modules/*/dtb/broadcom/bcm2*-rpi-*.dtb' './usr/lib/modules/*/dtb/broadcom/bcm2712-*.dtb' 2>/dev/null || true
	initrd=$(ls "$tmp"/boot/initrd.img-* 2>/dev/null | sort -V | tail -n1)
	[ -n "$initrd" ] || die "no /boot/initrd.img-* in $tar"
	kver=${initrd##*/initrd.img-}
	mods=$tmp/usr/lib/modules/$kver
	# The device trees that assemble.sh puts on the boot partition.
	set -- "$initrd" "$mods" "$mods"/dtb/broadcom/bcm2837-rpi-*.dtb "$mods"/dtb/broadcom/bcm2711-rpi-*.dtb "$mods"/dtb/broadcom/bcm2712-*.dtb
fi
[ $# -ge 3 ] || die "usage: bootcheck.sh [INITRD MODULES_DIR DTB...]"
initrd=$1 mods=$2
shift 2

stage "bootcheck: every Pi's root device has its drivers in the initramfs"
# mkinitramfs writes uncompressed cpio archives first (the modules, which
# are .ko.xz already), then one zstd-compressed archive (COMPRESS=zstd);
# list them all, finding each archive's end from cpio's block count, as
# initramfs-tools' unmkinitramfs does.
list_initrd() {
	local f=$1 off=0 size magic blocks
	size=$(stat -c %s "$f")
	: >"$tmp/initrd.list"
	while [ "$off" -lt "$size" ]; do
		magic=$(od -An -tx1 -j "$off" -N 6 "$f" | tr -d ' \n')
		case $magic in
		00*) off=$((off + 4)) ;; # padding between archives
		303730373031* | 303730373032*) # "070701"/"070702": newc cpio
			blocks=$(tail -c +$((off + 1)) "$f" | cpio -it 2>&1 >>"$tmp/initrd.list" | sed -n 's/^\([0-9]*\) blocks*$/\1/p')
			[ -n "$blocks" ] && [ "$blocks" -gt 0 ] || return 1
			off=$((off + blocks * 512))
			;;
		28b52ffd*) # zstd
			tail -c +$((off + 1)) "$f" | zstd -dc | cpio -it --quiet >>"$tmp/initrd.list" || return 1
			return 0
			;;
		*) return 1 ;;
		esac
	done
}
list_initrd "$initrd" ||
	die "cannot list $initrd (uncompressed cpio archives, then zstd: COMPRESS=zstd in rootfs/etc/initramfs-tools/conf.d/peerline.conf?)"
(cd "$repo" && go build -o "$tmp/bootcheck" ./cmd/bootcheck) || die "go build ./cmd/bootcheck failed"
report=$BUILD_DIR/bootcheck.txt
if "$tmp/bootcheck" -v -modules "$mods" -initramfs "$tmp/initrd.list" -rules "$repo/board/rpi/rootdev" "$@" >"$report" 2>"$tmp/err"; then
	sed -n 's/^ok: /    ok: /p' "$report"
	echo "    $(grep -c '\.ko' "$tmp/initrd.list") modules in the initramfs; full report: ${report#"$repo"/}"
	stage_end
else
	grep -E '^(ok|FAIL):' "$report" | sed 's/^/    /'
	cat "$tmp/err" >&2
	die "bootcheck failed: a Pi could not mount its root filesystem (full report: $report)"
fi
