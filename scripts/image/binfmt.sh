#!/usr/bin/env bash
# binfmt.sh up|down STATEFILE — make arm64 ELF binaries run on this amd64 host
# through qemu-user-static, and undo exactly what "up" changed.
#
# "up" mounts binfmt_misc if it is not mounted and registers qemu-aarch64 if
# it is not registered, writing what it did to STATEFILE; "down" reverses
# only those steps, so a host that already had arm64 emulation keeps it.
# Callers run "down" from an EXIT trap so a failed build leaves the host as
# it found it.
set -euo pipefail

mnt=/proc/sys/fs/binfmt_misc
cmd=${1:-}
state=${2:-}
if [ -z "$cmd" ] || [ -z "$state" ]; then echo "usage: $0 up|down STATEFILE" >&2; exit 2; fi

case "$cmd" in
up)
	: >"$state"
	if [ ! -e "$mnt/register" ]; then
		[ "$(id -u)" -eq 0 ] || { echo "binfmt: binfmt_misc is not mounted and mounting it needs root; run as root or: sudo mount -t binfmt_misc binfmt_misc $mnt" >&2; exit 1; }
		mount -t binfmt_misc binfmt_misc "$mnt" ||
			{ echo "binfmt: cannot mount binfmt_misc at $mnt (a container without CAP_SYS_ADMIN?); arm64 emulation is needed for the rootfs" >&2; exit 1; }
		echo mounted >>"$state"
	fi
	if [ ! -e "$mnt/qemu-aarch64" ]; then
		[ "$(id -u)" -eq 0 ] || { echo "binfmt: qemu-aarch64 is not registered and registering it needs root; run as root or: sudo update-binfmts --enable qemu-aarch64" >&2; exit 1; }
		[ -e /usr/share/binfmts/qemu-aarch64 ] || { echo "binfmt: qemu-user-static is not installed; run scripts/image/deps.sh" >&2; exit 1; }
		update-binfmts --enable qemu-aarch64 ||
			{ echo "binfmt: update-binfmts --enable qemu-aarch64 failed" >&2; exit 1; }
		echo registered >>"$state"
	fi
	grep -qx enabled "$mnt/qemu-aarch64" ||
		{ echo "binfmt: qemu-aarch64 is registered but disabled; enable it: echo 1 > $mnt/qemu-aarch64" >&2; exit 1; }
	# The F flag makes the kernel open the interpreter now, so it also works
	# inside the chroots mmdebstrap creates, which have no qemu binary.
	grep -q '^flags:.*F' "$mnt/qemu-aarch64" ||
		{ echo "binfmt: qemu-aarch64 lacks the F (fix binary) flag, so chroots cannot run arm64 programs; re-register it from qemu-user-static" >&2; exit 1; }
	;;
down)
	[ -f "$state" ] || exit 0
	if grep -qx registered "$state" && [ -e "$mnt/qemu-aarch64" ]; then
		update-binfmts --disable qemu-aarch64 >/dev/null 2>&1 || echo -1 >"$mnt/qemu-aarch64" || true
	fi
	if grep -qx mounted "$state" && [ -e "$mnt/register" ]; then
		umount "$mnt" || echo "binfmt: could not unmount $mnt; unmount it by hand" >&2
	fi
	rm -f "$state"
	;;
*)
	echo "usage: $0 up|down STATEFILE" >&2
	exit 2
	;;
esac
