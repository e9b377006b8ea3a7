#!/usr/bin/env bash
# deps.sh [smoke] — host packages the SD image build and the qemu boot test
# need; with "smoke", only what make image-smoke needs (CI). Idempotent:
# installs only what is missing, so every image target can call it cheaply.
set -euo pipefail

pkgs=(
	mmdebstrap        # arm64 root filesystem from Debian packages
	qemu-user-static  # runs arm64 maintainer scripts and the smoke test through binfmt_misc
	binfmt-support    # update-binfmts, to register and unregister qemu-aarch64
	arch-test         # mmdebstrap checks with it that arm64 binaries run
	debian-archive-keyring
	dosfstools mtools # FAT boot partition without mounting it
	fdisk             # sfdisk: partition table on a plain file
	squashfs-tools    # read-only root
	e2fsprogs         # mkfs.ext4 -d: data partition from a directory
	zstd              # compressed image
	dpkg-dev          # dpkg-deb, to unpack raspi-firmware without installing it
	file              # checks bin/arm64 holds static arm64 programs
	qemu-system-arm   # qemu-system-aarch64 for make qemu-test
	iproute2          # network namespace and tap for the simulated phone
	iputils-ping
	bc                # stage durations
	cpio              # bootcheck lists the initramfs
	device-tree-compiler # fdtput: qemu-pi.sh disables nodes qemu's raspi4b does not model
)

if [ "${1:-}" = smoke ]; then
	pkgs=(qemu-user-static bc) # bc: lib.sh times the stages
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "image deps: missing ${missing[*]}; run as root or: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
	exit 1
fi
echo "image deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || { echo "image deps: apt-get update failed; is the Debian mirror reachable?" >&2; exit 1; }
apt-get install -y -qq --no-install-recommends "${missing[@]}"
