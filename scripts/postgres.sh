#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests, from Debian's
# packages:
#
#   scripts/postgres.sh start    install when missing, init, start; print the DSN
#   scripts/postgres.sh stop     stop it
#   scripts/postgres.sh status   exit 0 when it runs
#   scripts/postgres.sh dsn      print the DSN
#   scripts/postgres.sh reset    stop it and delete its data
#
# The server listens on 127.0.0.1:${PG_PORT:-15432} with its data in
# ${PG_CACHE:-.cache/postgres} (gitignored), runs as the postgres system user
# (PostgreSQL refuses root) and trusts loopback connections: it is for tests
# only. The port lies below Linux's ephemeral range (see scripts/kafka.sh).
# Installing needs root (apt-get install postgresql), as on CI. Only the
# DSN goes to stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PG_PORT:-15432}"
CACHE="$(mkdir -p "${PG_CACHE:-.cache/postgres}" && cd "${PG_CACHE:-.cache/postgres}" && pwd)"
DATA="$CACHE/data"
LOG="$CACHE/server.log"
DSN="postgres://kgrpc@127.0.0.1:$PORT/postgres?sslmode=disable"

say() { echo "postgres.sh: $*" >&2; }
die() {
	say "ERROR: $*"
	exit 1
}

# bindir finds the newest installed server binaries.
bindir() {
	local d
	d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
	[[ -n "$d" && -x "$d/initdb" ]] && echo "$d"
}

# as_pg runs a command as the postgres user when we are root.
as_pg() {
	if [[ "$(id -u)" == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

install() {
	if bindir >/dev/null; then
		return
	fi
	[[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed and installing needs root: apt-get install -y postgresql"
	command -v apt-get >/dev/null || die "PostgreSQL is not installed and there is no apt-get here"
	say "installing PostgreSQL from Debian's packages (apt-get; about a minute)"
	local started=$SECONDS
	export DEBIAN_FRONTEND=noninteractive
	if ! { apt-get update -q && apt-get install -y -q --no-install-recommends postgresql; } >"$CACHE/apt.log" 2>&1; then
		tail -30 "$CACHE/apt.log" >&2
		die "apt-get install postgresql failed (all of it in $CACHE/apt.log)"
	fi
	bindir >/dev/null || die "apt-get installed postgresql but no server binaries are under /usr/lib/postgresql"
	say "installed in $((SECONDS - started))s"
}

running() {
	local bin
	bin="$(bindir)" || return 1
	[[ -f "$DATA/PG_VERSION" ]] && as_pg "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
	install
	local bin
	bin="$(bindir)"
	if running; then
		say "already running on 127.0.0.1:$PORT"
		echo "$DSN"
		return
	fi
	if [[ "$(id -u)" == 0 ]]; then
		chown -R postgres: "$CACHE"
		# The postgres user must reach the cache through the checkout.
		local d="$CACHE"
		while [[ "$d" != / ]]; do
			chmod o+x "$d" 2>/dev/null || true
			d="$(dirname "$d")"
		done
	fi
	if [[ ! -f "$DATA/PG_VERSION" ]]; then
		say "initialising a cluster in $DATA"
		as_pg "$bin/initdb" -D "$DATA" -U kgrpc --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$CACHE/initdb.log" 2>&1 ||
			{ tail -20 "$CACHE/initdb.log" >&2; die "initdb failed"; }
	fi
	if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
		die "port $PORT is taken by another process; set PG_PORT"
	fi
	say "starting PostgreSQL $("$bin/postgres" --version | awk '{print $NF}') on 127.0.0.1:$PORT (log $LOG)"
	# Durability is not what tests need: fsync off makes them faster.
	as_pg "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
		start >/dev/null || { tail -20 "$LOG" >&2; die "PostgreSQL did not start"; }
	local i
	for i in $(seq 1 60); do
		if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
			say "ready"
			echo "$DSN"
			return
		fi
		sleep 0.5
	done
	die "PostgreSQL does not answer on 127.0.0.1:$PORT (log $LOG)"
}

stop() {
	if ! running; then
		say "not running"
		return
	fi
	as_pg "$(bindir)/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
	say "stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) running && say "running on 127.0.0.1:$PORT" ;;
dsn) echo "$DSN" ;;
reset)
	stop
	rm -rf "$DATA"
	say "data deleted"
	;;
*)
	echo "usage: $0 start|stop|status|dsn|reset" >&2
	exit 2
	;;
esac
