#!/usr/bin/env bash
# smoke.sh — the fast check of the image's programs, for every CI run: the
# static arm64 binaries run under qemu-user, print their version, and
# peerlined accepts the shipped example config.
#
# qemu-aarch64-static is called directly, not through binfmt_misc, so this
# needs neither root nor any change to the host.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=scripts/image/lib.sh
. "$here/lib.sh"

bin=$repo/bin/arm64
example=$repo/rootfs/etc/peerline/peerlined.json
need_cmd qemu-aarch64-static
[ -x "$bin/peerlined" ] || die "$bin/peerlined missing; run: make build-arm64"

stage "image-smoke: arm64 binaries under qemu-user"
fail=0
# The daemons take -version, the CLI a "version" command.
for cmd in "peerlined -version" "peerline version" "rendezvousd -version"; do
	b=${cmd%% *}
	[ -x "$bin/$b" ] || { [ "$b" = peerlined ] && die "$bin/$b missing"; continue; }
	# shellcheck disable=SC2086 # the argument is part of cmd
	if out=$(qemu-aarch64-static "$bin/"$cmd 2>&1) && [[ $out == "$b "* ]]; then
		echo "    $cmd: $out"
	else
		echo "    FAIL $cmd: $out" >&2
		fail=1
	fi
done
if out=$(qemu-aarch64-static "$bin/peerlined" -check-config -config "$example" 2>&1); then
	echo "    peerlined -check-config ${example#"$repo"/}: $out"
else
	echo "    FAIL peerlined -check-config ${example#"$repo"/}: $out" >&2
	fail=1
fi
# A wrong config must fail, or the check above proves nothing.
bad=$(mktemp)
trap 'rm -f "$bad"' EXIT
echo '{"phone_port": "eth0", "no_such_key": 1}' >"$bad"
if out=$(qemu-aarch64-static "$bin/peerlined" -check-config -config "$bad" 2>&1); then
	echo "    FAIL peerlined -check-config accepted an unknown key: $out" >&2
	fail=1
else
	echo "    peerlined -check-config rejects a bad config: $out"
fi
stage_end
[ $fail -eq 0 ] || die "image-smoke failed"
echo "==> image-smoke: PASS"
