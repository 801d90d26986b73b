#!/usr/bin/env bash
# Reproduces the numbers in BENCHMARKS.md on a real Apache Kafka broker
# (scripts/kafka.sh): the transport against the raw confluent-kafka-go
# ping-pong floor, REST rates and latencies through the gateway, start time to
# the first served request of each binary, and resident memory at rest and
# under load. Bounded: about five minutes. Loopback only.
#
#   BENCH_DB=postgres    the services keep their data in PostgreSQL
#                        (scripts/postgres.sh) instead of SQLite files
#   BENCH_TRANSPORT=0    skip the transport benchmarks
#   BENCH_ROUNDS=3       rounds of the transport-versus-floor comparison
#   BENCH_DURATION=15s   length of each REST run
#   BENCH_BIN=DIR        use the binaries in DIR (gateway, usersvc, productsvc,
#                        ordersvc, bench, kgrpc-keys) instead of building
#                        them (scripts/bench-ab.sh compares two commits)
set -euo pipefail
cd "$(dirname "$0")/.."

DUR="${BENCH_DURATION:-15s}"
ROUNDS="${BENCH_ROUNDS:-3}"
OUT="$(mktemp -d)"
BIN="${BENCH_BIN:-.cache/bin}"
PREFIX="bench-$(date +%s)-"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

scripts/kafka.sh start
BROKERS="$(scripts/kafka.sh brokers)"
if [[ -z "${BENCH_BIN:-}" ]]; then
	echo "== building the binaries" >&2
	go build -o "$BIN/" ./cmd/gateway ./cmd/usersvc ./cmd/productsvc ./cmd/ordersvc ./cmd/bench ./cmd/kgrpc-keys
fi

if [[ "${BENCH_TRANSPORT:-1}" != 0 ]]; then
	echo "== transport vs raw ping-pong (go test -bench, $ROUNDS interleaved rounds)" >&2
	# Rounds rather than -count: each round measures the transport and
	# the floor a minute apart, so a machine that slows down for a while
	# (the broker's own GC, a neighbour) slows both of a pair.
	go -C kafkatransport test -c -o "$OUT/kafkatransport.test" .
	: >"$OUT/transport.txt"
	# A broker just started runs slowly until the JVM has compiled its hot
	# paths, and the transport goes first in each round: one round to warm
	# it up, not counted.
	echo "   warm-up round (not counted)" >&2
	KAFKA_BROKERS="$BROKERS" "$OUT/kafkatransport.test" -test.run '^$' -test.bench 'RawPingPong|Transport$|TransportGuarded$' \
		-test.benchtime 3s >/dev/null
	for round in $(seq "$ROUNDS"); do
		echo "   round $round of $ROUNDS" >&2
		KAFKA_BROKERS="$BROKERS" "$OUT/kafkatransport.test" -test.run '^$' -test.bench 'RawPingPong|Transport$|TransportGuarded$' \
			-test.benchtime 5s | grep -E '^Benchmark' | tee -a "$OUT/transport.txt"
	done
	# Per round: transport throughput at concurrency 64 as a share of the
	# floor's (target: at least 70 %), and p50 at concurrency 1 as a
	# multiple of the floor's (target: at most 1.3).
	# And the cost of record authentication: the guarded transport's
	# throughput at 64 as a share of the unguarded one's.
	awk '/^BenchmarkTransport\/conc=64/ {t64=$3} /^BenchmarkTransport\/conc=1-/ {t1=$7}
		/^BenchmarkTransportGuarded\/conc=64/ {g64=$3}
		/^BenchmarkRawPingPong\/conc=1-/ {r1=$7}
		/^BenchmarkRawPingPong\/conc=64/ {n++; printf "   round %d: throughput at 64 %.0f %% of the floor, p50 at 1 %.2fx the floor; guarded %.0f %% of unguarded\n", n, 100*t64/$3, t1/r1, 100*g64/t64}' \
		"$OUT/transport.txt" | tee -a "$OUT/transport.txt" >&2
	KAFKA_BROKERS="$BROKERS" "$OUT/kafkatransport.test" -test.run '^$' -test.bench 'StartToFirstCall' \
		-test.count 3 | grep -E '^Benchmark' | tee -a "$OUT/transport.txt"
fi

# db NAME: the --db of service NAME.
if [[ "${BENCH_DB:-sqlite}" == postgres ]]; then
	PG="$(scripts/postgres.sh start)"
	db() {
		local name="bench_$1_$(date +%s)"
		psql -q "$PG" -c "CREATE DATABASE $name" >&2
		local server="${PG%%\?*}" # postgres://user@host:port/postgres
		echo "${server%/*}/$name?sslmode=disable"
	}
else
	db() { echo "$OUT/$1.db"; }
fi

now_ms() { date +%s%3N; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
wait_http() { # url, timeout seconds
	local deadline=$(($(date +%s) + $2))
	until curl -fsS -o /dev/null "$1" 2>/dev/null; do
		(($(date +%s) < deadline)) || { echo "timeout waiting for $1" >&2; return 1; }
		sleep 0.02
	done
}

declare -A started port
port[usersvc]=19191; port[productsvc]=19192; port[ordersvc]=19193; port[gateway]=18088
"$BIN/kgrpc-keys" init --dir "$OUT/keys" >/dev/null
common=(--brokers "$BROKERS" --keyring "$OUT/keys/keyring.json" --topic-prefix "$PREFIX" --log-level warn)
start() { # name, args...
	local name=$1; shift
	local t0; t0=$(now_ms)
	"$BIN/$name" "${common[@]}" --unit-key "$OUT/keys/$name.key" --http-addr "127.0.0.1:${port[$name]}" "$@" 2>>"$OUT/$name.log" &
	pids+=($!)
	eval "pid_$name=$!"
	started[$name]=$t0
}
echo "== starting gateway and services (${BENCH_DB:-sqlite})" >&2
usersdb="$(db users)" productsdb="$(db products)" ordersdb="$(db orders)"
start usersvc --db "$usersdb" --admin-email admin@example.com --admin-password admin-pass-123
start productsvc --db "$productsdb" --seed-demo
start ordersvc --db "$ordersdb"
start gateway
for s in usersvc productsvc ordersvc; do
	wait_http "http://127.0.0.1:${port[$s]}/readyz" 60
	echo "start_to_ready_ms $s $(($(now_ms) - ${started[$s]}))" | tee -a "$OUT/start.txt"
done
# The gateway's first served request: a product read answered end to end.
wait_http "http://127.0.0.1:${port[gateway]}/v1/products?pageSize=1" 60
echo "start_to_first_request_ms gateway $(($(now_ms) - ${started[gateway]}))" | tee -a "$OUT/start.txt"

sleep 3
for s in gateway usersvc productsvc ordersvc; do
	p="pid_$s"
	echo "rss_rest_kb $s $(rss_kb "${!p}")" | tee -a "$OUT/rss.txt"
done

sample_rss() { # while the load runs, keep each process's peak RSS
	while sleep 0.5; do
		for s in gateway usersvc productsvc ordersvc; do
			p="pid_$s"
			echo "$s $(rss_kb "${!p}")"
		done
	done
}
API="http://127.0.0.1:${port[gateway]}"
sample_rss >"$OUT/rss-load.raw" &
sampler=$!
echo "== REST through the gateway, $DUR each" >&2
"$BIN/bench" rest --url "$API" --scenario get-product -c 32 -d "$DUR" | tee -a "$OUT/rest.txt"
"$BIN/bench" rest --url "$API" --scenario create-order -c 16 -d "$DUR" \
	--admin-email admin@example.com --admin-password admin-pass-123 | tee -a "$OUT/rest.txt"
kill "$sampler"
awk '{ if ($2 > peak[$1]) peak[$1] = $2 } END { for (s in peak) print "rss_load_peak_kb", s, peak[s] }' \
	"$OUT/rss-load.raw" | sort | tee -a "$OUT/rss.txt"
echo "results in $OUT" >&2
