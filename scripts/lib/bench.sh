# Helpers of the benchmark scripts (compare.sh, scale.sh); source it.

# wait_http URL SECONDS: wait until URL answers 2xx, or fail after SECONDS.
wait_http() {
	local deadline=$(($(date +%s) + $2))
	until curl -fsS -o /dev/null "$1" 2>/dev/null; do
		(($(date +%s) < deadline)) || { echo "timeout waiting for $1" >&2; return 1; }
		sleep 0.1
	done
}

# cpu_ticks PID: the process's user and system CPU so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# rss_kb PID: the process's resident memory in KiB.
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# need_wrk: install wrk with apt-get when it is missing, or fail.
need_wrk() {
	command -v wrk >/dev/null && return 0
	echo "installing wrk" >&2
	{ apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null 2>&1 || true
	command -v wrk >/dev/null || { echo "wrk is missing and apt-get could not install it" >&2; return 1; }
}
