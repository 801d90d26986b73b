#!/usr/bin/env bash
# How GET /v1/products/{id} scales with instances: for each layout
# "PxG" (P productsvc instances, G gateways) it starts them on one broker
# with usersvc and ordersvc, drives every gateway with wrk (the concurrency
# split between them), and prints the total rate, p99, the CPU per request
# of the gateways and product services together, and how many request
# partitions each productsvc instance holds (from its /metrics); an
# instance holding none stands by and is listed as such. This machine has
# two cores: more instances mostly show what the coordination costs.
# Loopback only, bounded (layouts x (start + SCALE_DURATION)).
#
#   scripts/scale.sh
#
#   SCALE_LAYOUTS="1x1 2x1 4x1 1x2 2x2"
#   SCALE_PARTITIONS=6     partitions of the request topics (fewer than P
#                          makes standbys: try SCALE_PARTITIONS=2)
#   SCALE_CONC=64          concurrent connections in all
#   SCALE_DURATION=15s
set -euo pipefail
cd "$(dirname "$0")/.."

LAYOUTS="${SCALE_LAYOUTS:-1x1 2x1 4x1 1x2 2x2}"
PARTS="${SCALE_PARTITIONS:-6}"
CONC="${SCALE_CONC:-64}"
DUR="${SCALE_DURATION:-15s}"
OUT="$(mktemp -d)"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
say() { echo "scale: $*" >&2; }
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh
need_wrk

go build -o "$OUT/" ./cmd/gateway ./cmd/usersvc ./cmd/productsvc ./cmd/ordersvc ./cmd/devkafka ./cmd/kgrpc-keys
"$OUT/kgrpc-keys" init --dir "$OUT/keys" >/dev/null

for layout in $LAYOUTS; do
	np=${layout%x*} ng=${layout#*x} dir="$OUT/$layout" run=() measured=()
	mkdir -p "$dir"
	brokers=127.0.0.1:19892
	"$OUT/devkafka" --addr "$brokers" --partitions "$PARTS" --log-level warn 2>"$dir/devkafka.log" &
	pids+=($!) run+=($!)
	unit() { # name, log, args...
		local name=$1 log=$2
		shift 2
		"$OUT/$name" --brokers "$brokers" --unit-key "$OUT/keys/$name.key" --keyring "$OUT/keys/keyring.json" \
			--topic-prefix "scale-" --partitions "$PARTS" --log-level warn --instance-id "$log" "$@" 2>"$dir/$log.log" &
		pids+=($!) run+=($!)
	}
	unit usersvc usersvc --db "$dir/users.db" --http-addr 127.0.0.1:19891 --admin-email admin@example.com --admin-password admin-pass-123
	unit ordersvc ordersvc --db "$dir/orders.db" --http-addr 127.0.0.1:19894
	for i in $(seq "$np"); do
		unit productsvc "productsvc-$i" --db "$dir/products.db" --http-addr "127.0.0.1:$((19900 + i))" --seed-demo
		measured+=($!)
	done
	for i in $(seq "$ng"); do
		unit gateway "gateway-$i" --http-addr "127.0.0.1:$((19920 + i))" --reply-partition "$((i - 1))"
		measured+=($!)
	done
	for i in $(seq "$ng"); do wait_http "http://127.0.0.1:$((19920 + i))/v1/products?pageSize=1" 120; done
	for i in $(seq "$np"); do wait_http "http://127.0.0.1:$((19900 + i))/readyz" 120; done
	id=$(curl -fsS "http://127.0.0.1:19921/v1/products?pageSize=1" | sed -E 's/.*"id":"([^"]+)".*/\1/')
	for i in $(seq "$ng"); do wrk -t1 -c8 -d2s "http://127.0.0.1:$((19920 + i))/v1/products/$id" >/dev/null 2>&1 || true; done
	sleep 2 # the group settles after the warm-up
	cpu0=0
	for p in "${measured[@]}"; do cpu0=$((cpu0 + $(cpu_ticks "$p"))); done
	wrks=()
	for i in $(seq "$ng"); do
		wrk -t1 -c"$((CONC / ng))" -d"$DUR" --latency "http://127.0.0.1:$((19920 + i))/v1/products/$id" >"$dir/wrk.$i" 2>&1 &
		wrks+=($!)
	done
	for j in "${wrks[@]}"; do wait "$j" 2>/dev/null || true; done
	cpu1=0
	for p in "${measured[@]}"; do cpu1=$((cpu1 + $(cpu_ticks "$p"))); done
	held=""
	for i in $(seq "$np"); do
		n=$(curl -fsS "http://127.0.0.1:$((19900 + i))/metrics" | awk '/^kgrpc_server_partitions_assigned\{.*ProductService/ {print $2}')
		held+="${held:+,}${n:-?}"
	done
	cat "$dir"/wrk.* | awk -v layout="$layout" -v ticks=$((cpu1 - cpu0)) -v hz="$(getconf CLK_TCK)" -v held="$held" '
		/^Requests\/sec/ { rate += $2 }
		/requests in/ { n += $1 }
		/Non-2xx/ { bad += $NF }
		/ 99%/ { v = $2; x = v + 0; if (v ~ /us$/) x /= 1000; else if (v ~ /[^m]s$/) x *= 1000; if (x > p99) p99 = x }
		END {
			printf "%s productsvc x%s gateway x%s: rate=%.0f/s p99=%.1fms non2xx=%d cpu_us_per_request=%.0f partitions_held=%s%s\n",
				layout, substr(layout, 1, index(layout, "x") - 1), substr(layout, index(layout, "x") + 1), rate, p99, bad,
				(n > 0 ? ticks * 1e6 / hz / n : 0), held, (held ~ /(^|,)0(,|$)/ ? " (an instance stands by)" : "")
		}' | tee -a "$OUT/results.txt"
	grep -h "stands by" "$dir"/productsvc-*.log 2>/dev/null | head -3 | sed 's/^/   /' >&2 || true
	for p in "${run[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${run[@]}"; do wait "$p" 2>/dev/null || true; done
done
say "results and logs in $OUT"
