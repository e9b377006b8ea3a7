#!/usr/bin/env bash
# firmware.sh DIR — unpack the Raspberry Pi boot firmware (bootcode.bin,
# start*.elf, fixup*.dat) from Debian's raspi-firmware package into DIR.
#
# The package is downloaded, not installed: its kernel hooks expect a mounted
# /boot/firmware and the old device tree paths. apt runs with a throw-away
# state, so the host gains no arm64 architecture and no package lists.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=scripts/image/lib.sh
. "$here/lib.sh"

out=${1:?usage: firmware.sh DIR}
BUILD_DIR=${BUILD_DIR:-$repo/build}
SUITE=${SUITE:-trixie}
apt=$BUILD_DIR/apt-$SUITE
debs=$BUILD_DIR/debs
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$debs"

deb=$(ls "$debs"/raspi-firmware_*.deb 2>/dev/null | tail -n1 || true)
if [ -z "$deb" ] || [ "${FORCE:-0}" = 1 ]; then
	mirror=$(debian_mirror)
	echo "deb $mirror $SUITE main non-free-firmware" >"$apt/sources.list"
	opts=(-o APT::Architecture=arm64 -o APT::Architectures=arm64
		-o Dir::State::Lists="$apt/lists" -o Dir::State::status=/dev/null
		-o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
		-o Dir::Cache="$apt/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
	apt-get -qq "${opts[@]}" update || die "apt-get update for $SUITE arm64 failed; is $mirror reachable?"
	(cd "$debs" && apt-get -qq "${opts[@]}" download "raspi-firmware/$SUITE") ||
		die "raspi-firmware is not in $SUITE for arm64"
	deb=$(ls "$debs"/raspi-firmware_*.deb | tail -n1)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
mkdir -p "$out"
src=$tmp/usr/lib/raspi-firmware
[ -f "$src/bootcode.bin" ] && [ -f "$src/start4.elf" ] ||
	die "$deb has no usr/lib/raspi-firmware/{bootcode.bin,start4.elf}; has the package layout changed?"
# Pi 3: bootcode.bin, start.elf, fixup.dat; Pi 4: start4.elf, fixup4.dat;
# the Pi 5 boots from its EEPROM and needs none. The _x/_db/_cd variants
# (camera, debug, cut-down) are 15 MB we never select.
cp -p "$src"/{bootcode.bin,start.elf,fixup.dat,start4.elf,fixup4.dat} "$out"/
# The firmware's redistribution terms travel with it.
cp "$tmp/usr/share/doc/raspi-firmware/copyright" "$out/LICENCE.raspi-firmware" ||
	die "$deb has no copyright file"
echo "    firmware: $(basename "$deb")"
