#!/usr/bin/env bash
# rootfs.sh — build the image's Debian arm64 root filesystem as a tarball with
# mmdebstrap, cached in $BUILD_DIR under a hash of its inputs.
#
# Everything peerline-specific (binaries, units, network files, fstab) is added
# later by assemble.sh, so code changes never rerun this ~7 minute step.
# FORCE=1 rebuilds even when the cached tarball matches.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=scripts/image/lib.sh
. "$here/lib.sh"
MAKE_TARGET=rootfs

BUILD_DIR=${BUILD_DIR:-$repo/build}
SUITE=${SUITE:-trixie}
# Fixed, not the commit time: the tarball is keyed by its inputs, and a new
# commit must not change it. Bump together with board/rpi/packages.
ROOTFS_EPOCH=${ROOTFS_EPOCH:-1795398905}
pkgfile=$repo/board/rpi/packages
initramfs=$repo/rootfs/etc/initramfs-tools

[ -f "$pkgfile" ] || die "$pkgfile missing"
mkdir -p "$BUILD_DIR"
key=$(cat "$pkgfile" "$here/rootfs.sh" "$initramfs/modules" "$initramfs/conf.d/peerline.conf" |
	{ cat; echo "$SUITE $ROOTFS_EPOCH"; } | sha256sum | cut -c1-16)
tar=$BUILD_DIR/rootfs-$key.tar

if [ -f "$tar" ] && [ "${FORCE:-0}" != 1 ]; then
	echo "==> rootfs: cached $tar (inputs unchanged; FORCE=1 rebuilds)"
	ln -sfn "$(basename "$tar")" "$BUILD_DIR/rootfs.tar"
	ln -sfn "$(basename "$tar").manifest" "$BUILD_DIR/rootfs.manifest"
	exit 0
fi

stage "rootfs: checks"
need_root "building the root filesystem (mmdebstrap in root mode, binfmt_misc)"
need_cmd mmdebstrap arch-test update-binfmts
need_space "$BUILD_DIR" 3000
mirror=$(debian_mirror)
security=${SECURITY_MIRROR:-${mirror%/debian}/debian-security}
include=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$pkgfile" | tr -s ' \n' ',' | sed 's/,$//')
echo "    suite $SUITE, mirror $mirror, packages: $include"

# One build at a time: a second one would unregister qemu-aarch64 under the
# first when it finishes.
exec 9>"$BUILD_DIR/.rootfs.lock"
flock -n 9 || die "another rootfs build is running (lock $BUILD_DIR/.rootfs.lock); wait for it"
state=$(mktemp "$BUILD_DIR/.binfmt.XXXXXX")
cleanup() {
	"$here/binfmt.sh" down "$state"
	rm -rf "$tar.tmp"
}
trap cleanup EXIT
"$here/binfmt.sh" up "$state"
arch-test arm64 >/dev/null || die "arm64 binaries do not run through binfmt_misc (arch-test arm64 failed)"

# The .deb cache makes a rebuild skip downloads; it never decides versions.
debcache=$BUILD_DIR/debcache
mkdir -p "$debcache"

stage "rootfs: mmdebstrap $SUITE arm64 (maintainer scripts run under qemu-user; ~7 min)"
comps="main non-free-firmware"
# The kernel comes from backports: only its device trees and modules drive
# the Pi 5's RP1 Ethernet (board/README.md). linux-base must come along,
# or the backports kernel's PreDepends cannot be met.
pin='Package: linux-base linux-image-* linux-binary-* linux-modules-* linux-base-*
Pin: release n='"$SUITE"'-backports
Pin-Priority: 990'
SOURCE_DATE_EPOCH=$ROOTFS_EPOCH mmdebstrap \
	--quiet --format=tar \
	--architectures=arm64 --variant=minbase --components="$comps" \
	--include="$include" \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--aptopt='APT::Install-Recommends "false"' \
	--setup-hook="mkdir -p \"\$1/etc/apt/preferences.d\" && printf '%s\n' '$pin' > \"\$1/etc/apt/preferences.d/kernel-backports\"" \
	--setup-hook="mkdir -p \"\$1/etc/initramfs-tools/conf.d\"" \
	--setup-hook="copy-in $initramfs/modules /etc/initramfs-tools/" \
	--setup-hook="copy-in $initramfs/conf.d/peerline.conf /etc/initramfs-tools/conf.d/" \
	--setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
	--setup-hook="sync-in $debcache /var/cache/apt/archives" \
	--skip=download/empty --skip=essential/unlink \
	--essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs && ln -sf /bin/true "$1/usr/sbin/update-initramfs"' \
	--customize-hook='rm "$1/usr/sbin/update-initramfs" && chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs' \
	--customize-hook='chroot "$1" update-initramfs -c -k all' \
	--customize-hook="sync-out /var/cache/apt/archives $debcache" \
	--customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
	--customize-hook="dpkg-query --admindir=\"\$1/var/lib/dpkg\" -W > $tar.manifest" \
	"$SUITE" "$tar.tmp" \
	"deb $mirror $SUITE $comps" \
	"deb $mirror $SUITE-updates $comps" \
	"deb $security $SUITE-security $comps" \
	"deb $mirror $SUITE-backports $comps" ||
	die "mmdebstrap failed (see above: a package missing from $SUITE means board/rpi/packages names one that does not exist for arm64)"
mv "$tar.tmp" "$tar"
ln -sfn "$(basename "$tar")" "$BUILD_DIR/rootfs.tar"
ln -sfn "$(basename "$tar").manifest" "$BUILD_DIR/rootfs.manifest"
stage_end
echo "    $tar: $(du -m "$tar" | cut -f1) MiB, $(wc -l <"$tar.manifest") packages, kernel $(grep -E '^linux-image-[0-9]' "$tar.manifest" | tr '\t' ' ')"
