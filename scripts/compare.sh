#!/usr/bin/env bash
# Side by side on one broker, in one run: GET /v1/products/{id} through our
# gateway and productsvc, the same request-reply through the NestJS 11 +
# kafkajs design this project replaces (bench/peers/nestjs: a NestJS gateway
# and product service), the REST floor (`bench rawrest`: a bare net/http
# handler in front of plain confluent-kafka-go request-reply, as a bridge
# and a responder process, answering the same JSON bytes) and the raw
# confluent-kafka-go request-reply floor (BenchmarkRawPingPong, no HTTP).
# The same load generator (wrk) drives the three REST systems at each
# concurrency, rotating which goes first. Prints per run the rate, p50 and
# p99, the CPU per request of the gateway and service processes together
# and the peak resident memory of each (rss_mb=gateway+service); then the
# ratios: ours to the peer's rate, the peer's p99 to ours, ours to the REST
# floor's rate and CPU, and ours and the REST floor to the raw floor's rate.
# Loopback only, bounded (about 3 x levels x COMPARE_DURATION plus a
# minute).
#
#   scripts/compare.sh
#
#   COMPARE_BROKER=devkafka      the embedded Kafka-protocol broker (cmd/devkafka,
#                                started afresh), or kafka: Apache Kafka from
#                                scripts/kafka.sh (left running afterwards, as
#                                scripts/test.sh leaves it; scripts/kafka.sh stop)
#   COMPARE_DURATION=15s         length of each wrk run
#   COMPARE_CONCURRENCY="1 64 256"
#   COMPARE_PEER=1               0 measures ours and the two floors only (no Node.js)
#
# Needs wrk (installed with apt-get when missing) and, for the peer, Node.js
# and npm (its packages are installed into bench/peers/nestjs on first use).
set -euo pipefail
cd "$(dirname "$0")/.."

BROKER="${COMPARE_BROKER:-devkafka}"
DUR="${COMPARE_DURATION:-15s}"
LEVELS="${COMPARE_CONCURRENCY:-1 64 256}"
PEER="${COMPARE_PEER:-1}"
OUT="$(mktemp -d)"
PEER_DIR=bench/peers/nestjs
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	# Keep the results and logs, not the binaries and databases.
	rm -rf "$OUT"/{gateway,usersvc,productsvc,ordersvc,devkafka,kgrpc-keys,bench,kafkatransport.test,keys} "$OUT"/*.db "$OUT"/*.db-* 2>/dev/null || true
}
trap cleanup EXIT
say() { echo "compare: $*" >&2; }

# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh
need_wrk
if [[ "$PEER" != 0 ]]; then
	command -v node >/dev/null && command -v npm >/dev/null || { say "the peer needs node and npm (COMPARE_PEER=0 skips it)"; exit 1; }
	if [[ ! -d "$PEER_DIR/node_modules" ]]; then
		say "installing the peer's npm packages"
		(cd "$PEER_DIR" && npm ci --no-audit --no-fund >/dev/null) || { say "npm ci failed in $PEER_DIR"; exit 1; }
	fi
	(cd "$PEER_DIR" && npx tsc -p .) || { say "the peer does not compile"; exit 1; }
fi

say "building into $OUT"
go build -o "$OUT/" ./cmd/gateway ./cmd/usersvc ./cmd/productsvc ./cmd/ordersvc ./cmd/devkafka ./cmd/kgrpc-keys ./cmd/bench
go -C kafkatransport test -c -o "$OUT/kafkatransport.test" .
"$OUT/kgrpc-keys" init --dir "$OUT/keys" >/dev/null

case "$BROKER" in
devkafka)
	BROKERS=127.0.0.1:19792
	"$OUT/devkafka" --addr "$BROKERS" --partitions 6 --log-level warn 2>"$OUT/devkafka.log" &
	pids+=($!)
	;;
kafka)
	scripts/kafka.sh start
	BROKERS="$(scripts/kafka.sh brokers)"
	;;
*)
	say "COMPARE_BROKER must be devkafka or kafka"
	exit 2
	;;
esac


say "starting ours (gateway, usersvc, productsvc, ordersvc) on $BROKER at $BROKERS"
prefix="cmp-$(date +%s)-"
unit() { # name, args...
	local name=$1
	shift
	"$OUT/$name" --brokers "$BROKERS" --unit-key "$OUT/keys/$name.key" --keyring "$OUT/keys/keyring.json" \
		--topic-prefix "$prefix" --log-level warn "$@" 2>"$OUT/$name.log" &
	pids+=($!)
	eval "pid_$name=$!"
}
unit usersvc --db "$OUT/users.db" --http-addr 127.0.0.1:19791 --admin-email admin@example.com --admin-password admin-pass-123
unit productsvc --db "$OUT/products.db" --http-addr 127.0.0.1:19793 --seed-demo
unit ordersvc --db "$OUT/orders.db" --http-addr 127.0.0.1:19794
unit gateway --http-addr 127.0.0.1:19790
wait_http "http://127.0.0.1:19790/v1/products?pageSize=1" 120
id=$(curl -fsS "http://127.0.0.1:19790/v1/products?pageSize=1" | sed -E 's/.*"id":"([^"]+)".*/\1/')
OURS_URL="http://127.0.0.1:19790/v1/products/$id"
OURS_PIDS="$pid_gateway $pid_productsvc"

say "starting the REST floor (bench rawrest: bridge and responder)"
curl -fsS -o "$OUT/product.json" "$OURS_URL"
for role in responder bridge; do
	"$OUT/bench" rawrest --role "$role" --brokers "$BROKERS" --http-addr 127.0.0.1:19770 \
		--topic-prefix "${prefix}rawrest-" --body-file "$OUT/product.json" 2>"$OUT/rawrest-$role.log" &
	pids+=($!)
	eval "pid_$role=$!"
done
wait_http "http://127.0.0.1:19770/" 120
FLOOR_URL="http://127.0.0.1:19770/"
FLOOR_PIDS="$pid_bridge $pid_responder"

if [[ "$PEER" != 0 ]]; then
	say "starting the NestJS peer"
	# kafkajs's createTopics gives up while a broker just started elects
	# the new partitions' leaders; the topics are there on a later try.
	for try in 1 2 3 4 5; do
		(cd "$PEER_DIR" && BROKERS=$BROKERS node dist/create-topics.js) >"$OUT/peer-topics.log" 2>&1 && break
		((try < 5)) || { say "peer topics: $(cat "$OUT/peer-topics.log")"; exit 1; }
		sleep 2
	done
	BROKERS=$BROKERS node "$PEER_DIR/dist/product-service.js" >"$OUT/peer-service.log" 2>&1 &
	pids+=($!)
	peer_svc=$!
	BROKERS=$BROKERS PORT=19780 node "$PEER_DIR/dist/gateway.js" >"$OUT/peer-gateway.log" 2>&1 &
	pids+=($!)
	peer_gw=$!
	wait_http "http://127.0.0.1:19780/products/1" 120
	PEER_URL="http://127.0.0.1:19780/products/1"
	PEER_PIDS="$peer_gw $peer_svc"
fi

# ms VALUE: a wrk latency ("812.00us", "1.23ms", "2.01s") in milliseconds.
ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }

# measure SYSTEM URL C "PIDS": one wrk run; prints "SYSTEM c=C rate p50_ms p99_ms non2xx cpu_us rss_mb".
measure() {
	local system=$1 url=$2 c=$3 pids_=$4 threads=2 cpu0=0 cpu1=0 p
	((c == 1)) && threads=1
	wrk -t1 -c"$c" -d2s "$url" >/dev/null 2>&1 || true # warm up
	for p in $pids_; do cpu0=$((cpu0 + $(cpu_ticks "$p"))); done
	: >"$OUT/rss.$system.$c"
	(while sleep 0.5; do
		line=""
		for p in $pids_; do line+="$(rss_kb "$p") "; done
		echo "$line"
	done >>"$OUT/rss.$system.$c") &
	local sampler=$!
	wrk -t"$threads" -c"$c" -d"$DUR" --latency "$url" >"$OUT/wrk.$system.$c" 2>&1 || true
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	for p in $pids_; do cpu1=$((cpu1 + $(cpu_ticks "$p"))); done
	awk -v sys="$system" -v c="$c" -v ticks=$((cpu1 - cpu0)) -v hz="$(getconf CLK_TCK)" \
		-v rss="$(awk '{ for (i = 1; i <= NF; i++) if ($i > m[i]) m[i] = $i } END { for (i = 1; i <= NF; i++) printf "%s%.0f", (i > 1 ? "+" : ""), m[i] / 1024 }' "$OUT/rss.$system.$c")" -v p50="$(ms "$(awk '/ 50%/ {print $2}' "$OUT/wrk.$system.$c")")" \
		-v p99="$(ms "$(awk '/ 99%/ {print $2}' "$OUT/wrk.$system.$c")")" '
		/^Requests\/sec/ { rate = $2 }
		/requests in/ { n = $1 }
		/Non-2xx/ { bad = $NF }
		/Socket errors/ { err = $0 }
		END {
			printf "%s c=%d rate=%.0f/s p50=%sms p99=%sms non2xx=%d cpu_us_per_request=%.0f rss_mb=%s%s\n",
				sys, c, rate, p50, p99, bad, (n > 0 ? ticks * 1e6 / hz / n : 0), rss, (err == "" ? "" : " " err)
		}' "$OUT/wrk.$system.$c"
}

# A broker just started is slow until its JVM has compiled its hot paths
# (Apache Kafka), and each system's first calls open connections: warm
# each up, not counted.
say "warming up (10s each, not counted)"
wrk -t2 -c64 -d10s "$OURS_URL" >/dev/null 2>&1 || true
wrk -t2 -c64 -d10s "$FLOOR_URL" >/dev/null 2>&1 || true
[[ "$PEER" == 0 ]] || wrk -t2 -c64 -d10s "$PEER_URL" >/dev/null 2>&1 || true

: >"$OUT/results.txt"
systems=(ours restfloor)
[[ "$PEER" == 0 ]] || systems+=(nestjs)
round=0
for c in $LEVELS; do
	# Rotate which system goes first, so none always runs on the
	# warmest or the coldest machine.
	for ((i = 0; i < ${#systems[@]}; i++)); do
		sys=${systems[(i + round) % ${#systems[@]}]}
		case $sys in
		ours) measure ours "$OURS_URL" "$c" "$OURS_PIDS" ;;
		restfloor) measure restfloor "$FLOOR_URL" "$c" "$FLOOR_PIDS" ;;
		nestjs) measure nestjs "$PEER_URL" "$c" "$PEER_PIDS" ;;
		esac | tee -a "$OUT/results.txt"
	done
	round=$((round + 1))
done

say "raw request-reply floor (BenchmarkRawPingPong) on the same broker"
KAFKA_BROKERS="$BROKERS" "$OUT/kafkatransport.test" -test.run '^$' -test.bench 'RawPingPong/conc=(1|64)$' \
	-test.benchtime "$DUR" | tee "$OUT/floor.txt" | grep -E '^Benchmark' || { say "floor benchmark failed: $(tail -5 "$OUT/floor.txt")"; exit 1; }
awk '/^BenchmarkRawPingPong\/conc=/ {
		split($1, a, "="); c = a[2] + 0; sub(/-[0-9]+$/, "", c)
		for (i = 3; i < NF; i++) { if ($(i + 1) == "calls/s") r = $i; if ($(i + 1) == "p50_us") p50 = $i; if ($(i + 1) == "p99_us") p99 = $i }
		printf "floor c=%d rate=%.0f/s p50=%.2fms p99=%.2fms\n", c, r, p50 / 1000, p99 / 1000
	}' "$OUT/floor.txt" | tee -a "$OUT/results.txt"

if grep -qE ' rate=0/s|non2xx=[1-9]' "$OUT/results.txt" || grep -qE '^(ours|restfloor) .*timeout [1-9]' "$OUT/results.txt"; then
	say "a run served nothing or answered errors: see $OUT"
	exit 1
fi
echo "== ratios on $BROKER ($DUR runs)"
awk '
	{ split($2, a, "="); c = a[2]; for (i = 3; i <= NF; i++) { split($i, kv, "="); v[$1, c, kv[1]] = kv[2] + 0 } ; levels[c] = 1 }
	END {
		for (c in levels) {
			if ((("ours", c, "rate") in v) && (("nestjs", c, "rate") in v) && v["nestjs", c, "rate"] > 0)
				printf "c=%s: ours/nestjs rate %.2fx, nestjs p99 / ours p99 %.2fx\n", c, v["ours", c, "rate"] / v["nestjs", c, "rate"], (v["ours", c, "p99"] > 0 ? v["nestjs", c, "p99"] / v["ours", c, "p99"] : 0)
			if ((("ours", c, "rate") in v) && (("restfloor", c, "rate") in v) && v["restfloor", c, "rate"] > 0)
				printf "c=%s: ours/restfloor rate %.0f %%, CPU per request ours/restfloor %.2fx\n", c, 100 * v["ours", c, "rate"] / v["restfloor", c, "rate"], (v["restfloor", c, "cpu_us_per_request"] > 0 ? v["ours", c, "cpu_us_per_request"] / v["restfloor", c, "cpu_us_per_request"] : 0)
			if ((("ours", c, "rate") in v) && (("floor", c, "rate") in v) && v["floor", c, "rate"] > 0)
				printf "c=%s: ours/floor rate %.0f %%, restfloor/floor rate %.0f %%\n", c, 100 * v["ours", c, "rate"] / v["floor", c, "rate"], 100 * v["restfloor", c, "rate"] / v["floor", c, "rate"]
		}
	}' "$OUT/results.txt" | sort -t= -k2 -n
say "results and logs in $OUT"
