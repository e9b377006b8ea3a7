#!/usr/bin/env bash
# Installs what building, testing and the demo need on Debian bookworm, and
# does nothing when it is all there already, so every make target can call it.
set -euo pipefail

need_root() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing packages: $*" >&2
		echo "install-deps: run as root (sudo make ...) or install them with: apt-get install $*" >&2
		exit 1
	fi
}

# command -> Debian package that provides it
declare -A pkgs=(
	[ip]=iproute2
	[nsenter]=util-linux
	[nft]=nftables
	[wg]=wireguard-tools
	[baresip]=baresip
	[sox]=sox
	[tcpdump]=tcpdump
	[sipp]=sip-tester
	[ping]=iputils-ping
	[busybox]=busybox
	[curl]=curl
	[make]=make
	[gcc]=gcc
	# The web console's browser lab test (pkg/peerlab TestConsoleBrowser).
	[chromium]=chromium
)
missing=()
for cmd in "${!pkgs[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkgs[$cmd]}")
done
# sox reads WAV without this, but the baresip recordings are written by
# libsndfile and checked with sox's stat effect; keep the formats package.
dpkg-query -W -f='${Status}' libsox-fmt-base 2>/dev/null | grep -q "ok installed" || missing+=(libsox-fmt-base)

if [ ${#missing[@]} -gt 0 ]; then
	need_root "${missing[@]}"
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Bookworm's own Go (1.19) predates toolchain switching. Backports' 1.23
# can switch: it fetches the toolchain go.mod names from the Go module proxy.
export PATH="$PATH:/usr/local/go/bin:/usr/lib/go-1.23/bin"
if ! command -v go >/dev/null 2>&1; then
	need_root golang-1.23-go
	echo "install-deps: installing Go 1.23 from bookworm-backports; it fetches the toolchain go.mod asks for"
	echo "deb http://deb.debian.org/debian bookworm-backports main" >/etc/apt/sources.list.d/peerline-backports.list
	apt-get update -qq
	apt-get install -y -qq -t bookworm-backports golang-1.23-go >/dev/null
fi
export GOTOOLCHAIN=auto

cd "$(dirname "$0")/.."
go mod download
