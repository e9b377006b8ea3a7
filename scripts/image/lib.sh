# shellcheck shell=bash
# Sourced by the image scripts: stage timing and early, explained failures.

# die prints why the build stopped and what to do, then exits.
die() {
	echo "image: error: $*" >&2
	exit 1
}

_stage_name=""
_stage_t0=0
# stage NAME starts a stage; the previous one is closed with its duration.
stage() {
	stage_end
	_stage_name=$1
	_stage_t0=$(date +%s.%N)
	printf '==> %s\n' "$_stage_name"
}
stage_end() {
	[ -n "$_stage_name" ] || return 0
	printf '    %s: %.1f s\n' "$_stage_name" "$(echo "$(date +%s.%N) - $_stage_t0" | bc)"
	_stage_name=""
}

# need_root WHY fails unless root; scripts set MAKE_TARGET for the hint.
need_root() {
	[ "$(id -u)" -eq 0 ] || die "$1 needs root (run: sudo make ${MAKE_TARGET:-image})"
}

# need_space DIR MiB fails before a long step if DIR's filesystem is too full.
need_space() {
	local avail
	avail=$(df -Pm "$1" | awk 'NR==2 {print $4}')
	[ "$avail" -ge "$2" ] || die "only ${avail} MiB free on the filesystem of $1, need ${2} MiB; free space or set BUILD_DIR/OUT_DIR elsewhere"
}

need_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || die "$c not found; run scripts/image/deps.sh"
	done
}

# debian_mirror prints the Debian mirror this machine's apt uses, so the image
# comes from the same place as the host's packages (override with MIRROR=).
debian_mirror() {
	if [ -n "${MIRROR:-}" ]; then echo "$MIRROR"; return; fi
	local m
	m=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list |
		grep -oE '(https?|file)://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ')
	[ -n "$m" ] || die "no Debian mirror in /etc/apt/sources*; set MIRROR=http://<mirror>/debian"
	echo "${m%/}"
}

# qemu_cleanup_on_exit makes a script that boots the image under qemu end
# what it started however it exits: the qemu whose pid it puts in
# $qemu_pid, the namespace $ns and the image copy in $work; a failure
# shows the end of the serial console log $log, which is all a CI run
# keeps of a Pi that did not boot.
qemu_cleanup_on_exit() {
	qemu_pid=""
	trap qemu_cleanup EXIT
	trap 'exit 130' INT TERM
}

qemu_cleanup() {
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
