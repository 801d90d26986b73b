#!/usr/bin/env bash
# A/B of the REST path: the split binaries of a base commit (A) against those
# of the working tree (B), GET /v1/products/{id} through the gateway, in
# rounds that alternate which side goes first, so that a machine that slows
# down for a while slows both of a pair. With the embedded broker each run
# gets a fresh one (a broker slows down as topics pile up, which would
# favour the side that runs first); on Apache Kafka the two sides share it.
# Prints each run's rate and latency, and per round the ratios B/A of the
# rate and of the CPU per request of the four units and the embedded broker
# (steadier than the rate on a shared machine: the load generator's share
# drops out), then their medians. Loopback only, bounded
# (rounds x 2 x (start + 2s + BENCH_DURATION)).
#
#   scripts/bench-ab.sh BASE [ROUNDS]   BASE: a commit, e.g. HEAD~5 (default 3 rounds)
#
#   BENCH_BROKER=devkafka  the embedded Kafka-protocol broker (default), or
#                kafka     Apache Kafka from scripts/kafka.sh
#   BENCH_CONC=64          concurrent callers
#   BENCH_DURATION=15s     length of each measured run
#   BENCH_SCENARIO=get-product  or create-order
#   BENCH_RATE=0           calls a second at most (0: closed loop, as fast as
#                they go); a rate both sides keep up with makes the CPU per
#                request ratio the cost of B's changes alone, without the
#                batching a lower throughput loses
#   BENCH_ENV_A, BENCH_ENV_B     "KEY=value ..." settings of one side's units,
#                such as OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:19595
#                (with BENCH_SINK=1, a local OTLP/HTTP receiver runs there:
#                bench otlp-sink). BASE=HEAD with different settings
#                measures what a setting costs.
#
# Either side may predate per-unit keys: binaries whose --help has no
# --unit-key get --auth-secret.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE="${1:?usage: scripts/bench-ab.sh BASE_COMMIT [ROUNDS]}"
ROUNDS="${2:-3}"
CONC="${BENCH_CONC:-64}"
DUR="${BENCH_DURATION:-15s}"
SCENARIO="${BENCH_SCENARIO:-get-product}"
OUT="$(mktemp -d)"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	git worktree remove --force "$OUT/base-src" 2>/dev/null || true
}
trap cleanup EXIT
say() { echo "bench-ab: $*" >&2; }

say "building A ($BASE) and B (working tree) into $OUT"
git worktree add --detach "$OUT/base-src" "$BASE" >/dev/null 2>&1
(cd "$OUT/base-src" && go build -o "$OUT/a/" ./cmd/gateway ./cmd/usersvc ./cmd/productsvc ./cmd/ordersvc)
go build -o "$OUT/b/" ./cmd/gateway ./cmd/usersvc ./cmd/productsvc ./cmd/ordersvc ./cmd/bench ./cmd/devkafka ./cmd/kgrpc-keys
"$OUT/b/kgrpc-keys" init --dir "$OUT/keys" >/dev/null

case "${BENCH_BROKER:-devkafka}" in
devkafka)
	BROKERS=127.0.0.1:19592 # started afresh by each run
	;;
kafka)
	scripts/kafka.sh start
	BROKERS="$(scripts/kafka.sh brokers)"
	;;
*)
	say "BENCH_BROKER must be devkafka or kafka"
	exit 2
	;;
esac

if [[ -n "${BENCH_SINK:-}" ]]; then
	"$OUT/b/bench" otlp-sink --addr 127.0.0.1:19595 >"$OUT/sink.txt" 2>&1 &
	pids+=($!)
fi

wait_http() { # url, timeout seconds
	local deadline=$(($(date +%s) + $2))
	until curl -fsS -o /dev/null "$1" 2>/dev/null; do
		(($(date +%s) < deadline)) || { say "timeout waiting for $1"; return 1; }
		sleep 0.05
	done
}

# run SIDE ROUND: start SIDE's four units on a fresh topic prefix, measure,
# stop them.
run() {
	local side=$1 round=$2 bin="$OUT/$1" prefix="ab-$1-$2-$(date +%s)-" run_pids=() broker_pid=
	local dir="$OUT/$side-$round"
	mkdir -p "$dir"
	if [[ "${BENCH_BROKER:-devkafka}" == devkafka ]]; then
		"$OUT/b/devkafka" --addr "$BROKERS" --partitions 6 --log-level warn 2>>"$dir/devkafka.log" &
		broker_pid=$!
		pids+=($!)
	fi
	unit() { # name, args...
		local name=$1
		shift
		local auth=(--auth-secret bench-secret-0123456789abcdef0123) help
		help="$("$bin/$name" --help 2>&1 || true)"
		if [[ "$help" == *--unit-key* ]]; then
			auth=(--unit-key "$OUT/keys/$name.key" --keyring "$OUT/keys/keyring.json")
		fi
		local envs=()
		if [[ $side == a ]]; then read -ra envs <<<"${BENCH_ENV_A:-}"; else read -ra envs <<<"${BENCH_ENV_B:-}"; fi
		env "${envs[@]}" "$bin/$name" --brokers "$BROKERS" "${auth[@]}" --topic-prefix "$prefix" --log-level warn "$@" 2>>"$dir/$name.log" &
		run_pids+=($!)
		pids+=($!)
	}
	unit usersvc --db "$dir/users.db" --http-addr 127.0.0.1:19591 --admin-email admin@example.com --admin-password admin-pass-123
	unit productsvc --db "$dir/products.db" --http-addr 127.0.0.1:19593 --seed-demo
	unit ordersvc --db "$dir/orders.db" --http-addr 127.0.0.1:19594
	unit gateway --http-addr 127.0.0.1:19590 --auth-rate-limit 0
	wait_http "http://127.0.0.1:19590/v1/products?pageSize=1" 90
	local bench=("$OUT/b/bench" rest --url http://127.0.0.1:19590 --scenario "$SCENARIO" -c "$CONC" --rate "${BENCH_RATE:-0}"
		--admin-email admin@example.com --admin-password admin-pass-123)
	"${bench[@]}" -d 2s >/dev/null 2>&1 # warm up, then measure rate and CPU together
	local measured=("${run_pids[@]}" $broker_pid) cpu0=0 cpu1=0
	for p in "${measured[@]}"; do cpu0=$((cpu0 + $(cpu_ticks "$p"))); done
	"${bench[@]}" -d "$DUR" --warmup 0s | tee "$dir/result.txt" | sed "s/^/   $side round $round: /" >&2
	for p in "${measured[@]}"; do cpu1=$((cpu1 + $(cpu_ticks "$p"))); done
	echo "$((cpu1 - cpu0))" >"$dir/cpu_ticks"
	# The units first, while the broker still runs (they drain through
	# it); any still there after 45s is killed. Then the broker.
	for p in "${run_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	local deadline=$(($(date +%s) + 45))
	for p in "${run_pids[@]}"; do
		while kill -0 "$p" 2>/dev/null && (($(date +%s) < deadline)); do sleep 0.2; done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	if [[ -n "$broker_pid" ]]; then
		kill "$broker_pid" 2>/dev/null || true
		wait "$broker_pid" 2>/dev/null || true
	fi
}

# rate FILE: the ok/s figure of a bench rest result.
rate() { grep -oE '[0-9.]+ ok/s' "$1" | head -1 | cut -d' ' -f1; }
# cpu_ticks PID: the process's user and system CPU so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# cpu_us DIR: CPU microseconds per request of the run in DIR, all four
# units and (devkafka) the broker together.
cpu_us() {
	local ok
	ok=$(grep -oE '[0-9]+ ok,' "$1/result.txt" | head -1 | cut -d' ' -f1)
	awk -v t="$(cat "$1/cpu_ticks")" -v n="$ok" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", t * 1e6 / hz / n }'
}

ratios=() cpus=()
for round in $(seq "$ROUNDS"); do
	if ((round % 2)); then
		run a "$round"
		run b "$round"
	else
		run b "$round"
		run a "$round"
	fi
	a=$(rate "$OUT/a-$round/result.txt")
	b=$(rate "$OUT/b-$round/result.txt")
	ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')
	ratios+=("$ratio")
	ca=$(cpu_us "$OUT/a-$round") cb=$(cpu_us "$OUT/b-$round")
	cpu=$(awk -v a="$ca" -v b="$cb" 'BEGIN { printf "%.3f", b / a }')
	cpus+=("$cpu")
	echo "round $round: A $a ok/s $ca us CPU/request, B $b ok/s $cb us CPU/request; B/A rate $ratio, CPU $cpu"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "$SCENARIO at concurrency $CONC on ${BENCH_BROKER:-devkafka}, $ROUNDS rounds (A = $BASE, B = working tree):" \
	"median B/A rate $(median "${ratios[@]}"), CPU per request $(median "${cpus[@]}")"
