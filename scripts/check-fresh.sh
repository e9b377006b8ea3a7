#!/usr/bin/env bash
# check-fresh.sh — does the README's promise hold on a bare machine? Builds a
# fresh Debian bookworm root with `mmdebstrap --variant=minbase`, copies this
# checkout into it (a clone of HEAD with the working tree's changes on top),
# and runs there, as root, exactly what the README tells a newcomer to run:
#
#	apt-get install make git
#	make demo
#	CI=true make test        (CI=true: a lab test that cannot run fails)
#
# It prints how long each step took and PASS or FAIL; the full log is kept
# in build/check-fresh/ (LOG= names another file). Needs root (chroot, mounts,
# network namespaces inside the chroot), the Debian mirror and the Go module
# proxy; takes as long as a make test plus about 10 minutes.
#
# The chroot shares the kernel, /dev, /proc and /sys with the machine; the
# lab tests build their own namespaces there as they do anywhere. /run is a
# fresh tmpfs, so their namespace names (/run/netns) never meet the host's.
# KEEP=1 leaves the root in place afterwards for a look.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
suite=${SUITE:-bookworm}
mkdir -p "$repo/build/check-fresh"
log=${LOG:-$repo/build/check-fresh/$(date -u +%Y%m%dT%H%M%SZ).log}

die() { echo "check-fresh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (it builds a Debian root and runs the lab tests in it): sudo make check-fresh"
if ! command -v mmdebstrap >/dev/null 2>&1; then
	echo "check-fresh: installing mmdebstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null ||
		die "could not install mmdebstrap: apt-get install mmdebstrap"
fi

root=$(mktemp -d /var/tmp/peerline-fresh.XXXXXX)
t0=$(date +%s)
step_t0=$t0
step() {
	local now
	now=$(date +%s)
	printf 'check-fresh: [%4ds, step %ds] %s\n' $((now - t0)) $((now - step_t0)) "$*" | tee -a "$log"
	step_t0=$now
}

# Processes still running in the root are ours (started below); end them by
# their id so the mounts can go.
kill_inside() {
	local p pids=()
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && pids+=("${p#/proc/}")
	done
	[ ${#pids[@]} -eq 0 ] && return
	echo "check-fresh: ending processes left in the root: ${pids[*]}" | tee -a "$log"
	kill -TERM "${pids[@]}" 2>/dev/null || true
	sleep 2
	kill -KILL "${pids[@]}" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	set +e
	if [ -d "$root/run/netns" ] && [ -n "$(ls -A "$root/run/netns" 2>/dev/null)" ]; then
		echo "check-fresh: namespaces left behind in the root: $(ls "$root/run/netns" | tr '\n' ' ')" | tee -a "$log"
		for ns in "$root"/run/netns/*; do chroot "$root" ip netns delete "$(basename "$ns")"; done
	fi
	kill_inside
	for m in dev/pts dev sys proc run; do
		mountpoint -q "$root/$m" && umount -R "$root/$m"
	done
	mountpoint -q "$root" && umount -R "$root"
	if findmnt -rn -o TARGET | grep -q "^$root"; then
		echo "check-fresh: mounts remain under $root; not removing it" | tee -a "$log"
	elif [ "${KEEP:-}" = 1 ]; then
		echo "check-fresh: root kept in $root (remove with: rm -rf --one-file-system $root)" | tee -a "$log"
	else
		rm -rf --one-file-system "$root"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "check-fresh: $suite minbase root in $root; log $log" | tee "$log"
mmdebstrap --variant=minbase "$suite" "$root" >>"$log" 2>&1 || die "mmdebstrap failed (see $log)"
step "mmdebstrap --variant=minbase $suite"

# The checkout: HEAD as a clone would have it, then the working tree's
# changes and new files (those git does not ignore) on top.
dst=$root/root/peerline
git clone -q --no-checkout "$repo" "$dst"
git -C "$dst" checkout -q --detach "$(git -C "$repo" rev-parse HEAD)"
dirty=$(git -C "$repo" status --porcelain --untracked-files=normal | wc -l)
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r tar -c --no-recursion 2>/dev/null) |
	tar -x -C "$dst"
git -C "$repo" ls-files -z --deleted | (cd "$dst" && xargs -0 -r rm -f)
step "copied the checkout ($(git -C "$repo" rev-parse --short HEAD), $dirty changed or new files on top)"

# The machine's network comes along: its resolver, and the certificate
# authorities it added locally (a TLS-inspecting proxy's, say), which the
# root's ca-certificates then trusts as the machine does. Without them the
# go command cannot fetch the toolchain on such a network.
cp /etc/resolv.conf "$root/etc/resolv.conf"
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
	mkdir -p "$root/usr/local/share/ca-certificates"
	cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
# The root is made a mount point of its own: ip netns exec and ip -n make
# "/" a slave mount in their mount namespace, which fails (EINVAL) when
# the chroot's "/" is only a directory.
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount --make-rslave "$root/dev"
mount -t tmpfs -o mode=755 tmpfs "$root/run"

run() {
	local what=$1
	shift
	echo "+ $*" >>"$log"
	if chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		bash -c "cd /root/peerline && $*" >>"$log" 2>&1; then
		step "$what: ok"
	else
		step "$what: FAILED (the end of the log follows; all of it is in $log)"
		tail -n 60 "$log"
		echo "check-fresh: FAIL"
		exit 1
	fi
}

run "apt-get install make git" "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make git >/dev/null"
run "make demo" "make demo"
run "CI=true make test" "CI=true make test"
grep -E '^(ok|FAIL|---)|tests took|skipped' "$log" | tail -n 80 || true
echo "check-fresh: PASS in $(($(date +%s) - t0)) s: a fresh $suite minbase root ran apt-get install make git, make demo and CI=true make test" | tee -a "$log"
