#!/usr/bin/env bash
# install-deps.sh [go] — installs what building, testing and the demo need on
# Debian bookworm, and does nothing when it is all there already, so every
# make target can call it. With "go" it only makes sure a go command exists
# (the cheap prerequisite of the targets that need nothing else).
set -euo pipefail

need_root() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing packages: $*" >&2
		echo "install-deps: run as root (sudo make ...) or install them with: apt-get install $*" >&2
		exit 1
	fi
}

# Bookworm's own Go (1.19) predates toolchain switching. Backports' 1.23
# can switch: it fetches the toolchain go.mod names from the Go module proxy.
# The backports source is added for this one install and removed again, so
# the machine's apt sources end as they were (apt will not upgrade
# golang-1.23-go later; it is only the bootstrap of the toolchain go.mod
# names, which the go command fetches and keeps up to date itself).
install_go() {
	export PATH="$PATH:/usr/local/go/bin:/usr/lib/go-1.23/bin"
	if command -v go >/dev/null 2>&1; then
		# Go before 1.21 cannot fetch the toolchain go.mod names.
		local v
		v=$(go env GOVERSION 2>/dev/null || true)
		if [[ $v =~ ^go1\.([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -lt 21 ]; then
			echo "install-deps: $(command -v go) is $v, too old to fetch the toolchain go.mod names (needs 1.21 or later):" >&2
			echo "install-deps: remove it (apt-get remove golang-go) and run make again, or put a newer go first in PATH" >&2
			exit 1
		fi
		return
	fi
	need_root golang-1.23-go
	echo "install-deps: installing Go 1.23 from bookworm-backports (the backports source is removed again afterwards); it fetches the toolchain go.mod asks for"
	local list=/etc/apt/sources.list.d/peerline-backports.list
	echo "deb http://deb.debian.org/debian bookworm-backports main" >"$list"
	trap 'rm -f "$list"' EXIT
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends -t bookworm-backports golang-1.23-go >/dev/null
	rm -f "$list"
	trap - EXIT
	apt-get update -qq || true
	echo "install-deps: Go is in /usr/lib/go-1.23/bin (make adds it to PATH; by hand: export PATH=\$PATH:/usr/lib/go-1.23/bin)"
}

if [ "${1:-}" = go ]; then
	install_go
	exit 0
fi

# command (or absolute path) -> Debian package that provides it
declare -A pkgs=(
	[ip]=iproute2
	[ss]=iproute2
	[nsenter]=util-linux
	[nft]=nftables
	[wg]=wireguard-tools
	[baresip]=baresip
	# pkg/registrar's lab test: a softphone that does SHA-256 digest.
	[linphonec]=linphone-cli
	[sox]=sox
	[tcpdump]=tcpdump
	[sipp]=sip-tester
	# pkg/trunk's lab test: the provider's registrar/proxy and its media relay.
	[kamailio]=kamailio
	[rtpengine]=rtpengine-daemon
	[ping]=iputils-ping
	[busybox]=busybox
	[curl]=curl
	[make]=make
	[gcc]=gcc
	[git]=git
	[bc]=bc                      # image-smoke's stage timings
	[dtc]=device-tree-compiler   # pkg/fdt checks its reader and writer against dtc
	[systemd-analyze]=systemd    # the lab tests that verify the systemd units
	[/bin/kill]=procps           # peerlined.service's ExecReload, which verify checks exists
	# The go command fetches the toolchain and modules over HTTPS.
	[/etc/ssl/certs/ca-certificates.crt]=ca-certificates
	# The web console's browser lab test (pkg/peerlab TestConsoleBrowser).
	[chromium]=chromium
)
missing=()
for cmd in "${!pkgs[@]}"; do
	if [[ $cmd == /* ]]; then
		[ -e "$cmd" ] && continue
	else
		command -v "$cmd" >/dev/null 2>&1 && continue
	fi
	[[ " ${missing[*]} " == *" ${pkgs[$cmd]} "* ]] || missing+=("${pkgs[$cmd]}")
done
# sox reads WAV without this, but the baresip recordings are written by
# libsndfile and checked with sox's stat effect; keep the formats package.
dpkg-query -W -f='${Status}' libsox-fmt-base 2>/dev/null | grep -q "ok installed" || missing+=(libsox-fmt-base)
# gcc builds cgo (make build, go test -race) only with the C library's
# headers, which gcc merely recommends.
dpkg-query -W -f='${Status}' libc6-dev 2>/dev/null | grep -q "ok installed" || missing+=(libc6-dev)

if [ ${#missing[@]} -gt 0 ]; then
	need_root "${missing[@]}"
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# kamailio and rtpengine-daemon start system services on install; the
	# lab runs its own copies inside namespaces, so stop and disable the
	# machine's, which would otherwise answer SIP on every address.
	for pkg in kamailio rtpengine-daemon; do
		if [[ " ${missing[*]} " == *" $pkg "* ]] && command -v systemctl >/dev/null 2>&1; then
			# rtpengine-daemon's unit has the alias rtpengine.
			systemctl disable --now "$pkg" >/dev/null 2>&1 || true
		fi
	done
fi

install_go
export GOTOOLCHAIN=auto

cd "$(dirname "$0")/.."
go mod download
