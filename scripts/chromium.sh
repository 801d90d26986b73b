#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test of GET /docs
# (cmd/platform TestDocsPage) when it is missing: `scripts/chromium.sh install`
# prints its path. Installing needs root and apt-get, as on CI.
set -euo pipefail
say() { echo "chromium.sh: $*" >&2; }
die() { say "$*"; exit 1; }

case "${1:-install}" in
install)
	if command -v chromium >/dev/null; then
		command -v chromium
		exit 0
	fi
	[[ "$(id -u)" == 0 ]] || die "Chromium is not installed and installing needs root: apt-get install -y chromium"
	command -v apt-get >/dev/null || die "Chromium is not installed and there is no apt-get here"
	say "installing Chromium from Debian's packages (apt-get; a minute or two)"
	started=$SECONDS
	log="$(mktemp)"
	export DEBIAN_FRONTEND=noninteractive
	if ! { apt-get update -q && apt-get install -y -q --no-install-recommends chromium fonts-liberation; } >"$log" 2>&1; then
		tail -30 "$log" >&2
		die "apt-get install chromium failed"
	fi
	rm -f "$log"
	command -v chromium >/dev/null || die "apt-get installed chromium but there is no chromium command"
	say "installed in $((SECONDS - started))s"
	command -v chromium
	;;
*)
	die "usage: scripts/chromium.sh install"
	;;
esac
