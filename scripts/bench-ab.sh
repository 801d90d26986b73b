#!/usr/bin/env bash
# A/B of the REST path: the split binaries of a base commit (A) against those
# of the working tree (B), GET /v1/products/{id} through the gateway, on one
# broker, in alternating rounds so that a machine that slows down for a while
# slows both of a pair. Prints each run's rate and latency and the ratio B/A
# per round and their median. Loopback only, bounded (rounds x 2 x
# (start + BENCH_DURATION)).
#
#   scripts/bench-ab.sh BASE [ROUNDS]   BASE: a commit, e.g. HEAD~5 (default 3 rounds)
#
#   BENCH_BROKER=devkafka  the embedded Kafka-protocol broker (default), or
#                kafka     Apache Kafka from scripts/kafka.sh
#   BENCH_CONC=64          concurrent callers
#   BENCH_DURATION=15s     length of each measured run
#   BENCH_SCENARIO=get-product  or create-order
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
	"$OUT/b/devkafka" --addr 127.0.0.1:19592 --partitions 6 --log-level warn 2>"$OUT/devkafka.log" &
	pids+=($!)
	BROKERS=127.0.0.1:19592
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
	local side=$1 round=$2 bin="$OUT/$1" prefix="ab-$1-$2-$(date +%s)-" run_pids=()
	local dir="$OUT/$side-$round"
	mkdir -p "$dir"
	unit() { # name, args...
		local name=$1
		shift
		local auth=(--auth-secret bench-secret-0123456789abcdef0123) help
		help="$("$bin/$name" --help 2>&1 || true)"
		if [[ "$help" == *--unit-key* ]]; then
			auth=(--unit-key "$OUT/keys/$name.key" --keyring "$OUT/keys/keyring.json")
		fi
		"$bin/$name" --brokers "$BROKERS" "${auth[@]}" --topic-prefix "$prefix" --log-level warn "$@" 2>>"$dir/$name.log" &
		run_pids+=($!)
		pids+=($!)
	}
	unit usersvc --db "$dir/users.db" --http-addr 127.0.0.1:19591 --admin-email admin@example.com --admin-password admin-pass-123
	unit productsvc --db "$dir/products.db" --http-addr 127.0.0.1:19593 --seed-demo
	unit ordersvc --db "$dir/orders.db" --http-addr 127.0.0.1:19594
	unit gateway --http-addr 127.0.0.1:19590 --auth-rate-limit 0
	wait_http "http://127.0.0.1:19590/v1/products?pageSize=1" 90
	"$OUT/b/bench" rest --url http://127.0.0.1:19590 --scenario "$SCENARIO" -c "$CONC" -d "$DUR" \
		--admin-email admin@example.com --admin-password admin-pass-123 | tee "$dir/result.txt" |
		sed "s/^/   $side round $round: /" >&2
	for p in "${run_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${run_pids[@]}"; do wait "$p" 2>/dev/null || true; done
}

# rate FILE: the ok/s figure of a bench rest result.
rate() { grep -oE '[0-9.]+ ok/s' "$1" | head -1 | cut -d' ' -f1; }

ratios=()
for round in $(seq "$ROUNDS"); do
	run a "$round"
	run b "$round"
	a=$(rate "$OUT/a-$round/result.txt")
	b=$(rate "$OUT/b-$round/result.txt")
	ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')
	ratios+=("$ratio")
	echo "round $round: A $a calls/s, B $b calls/s, B/A $ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo "$SCENARIO at concurrency $CONC on ${BENCH_BROKER:-devkafka}: median B/A $median over $ROUNDS rounds (A = $BASE, B = working tree)"
