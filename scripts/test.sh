#!/usr/bin/env bash
# Every test, as `make test` (the README's test command) and CI run it:
#
#   1. go test -race ./... with the in-process kfake broker;
#   2. the Kafka-dependent suites again against a real Apache Kafka broker
#      (scripts/kafka.sh), when Java and Maven are present or CI=true.
#
# When the real broker is expected and cannot start, this fails loudly; it
# never reports the real-Kafka pass as run when it was not.
set -euo pipefail
cd "$(dirname "$0")/.."

# The suites that take their broker from KAFKA_BROKERS.
REAL_KAFKA_PACKAGES=(./kafkatransport ./cmd/platform ./internal/scaletest)

summary=()
finish() {
	echo
	echo "== test summary"
	for line in "${summary[@]}"; do echo "   $line"; done
}
trap finish EXIT

echo "== pass 1: every package, in-process kfake broker, race detector"
env -u KAFKA_BROKERS go test -race -count=1 -timeout 20m ./...
summary+=("kfake pass: every package passed")

want_real=false
if [[ "${CI:-}" == "true" ]] || { command -v java >/dev/null && command -v mvn >/dev/null; }; then
	want_real=true
fi
if [[ "${SKIP_REAL_KAFKA:-}" == "1" && "${CI:-}" != "true" ]]; then
	want_real=false
	summary+=("real Kafka pass: NOT RUN (SKIP_REAL_KAFKA=1)")
elif [[ "$want_real" != true ]]; then
	summary+=("real Kafka pass: NOT RUN (no Java 17 and Maven here)")
fi

if [[ "$want_real" == true ]]; then
	echo "== pass 2: ${REAL_KAFKA_PACKAGES[*]} against real Apache Kafka"
	stop_kafka() { scripts/kafka.sh stop || true; }
	trap 'stop_kafka; finish' EXIT
	if ! scripts/kafka.sh start; then
		summary+=("real Kafka pass: FAILED TO START the broker")
		exit 1
	fi
	KAFKA_BROKERS="$(scripts/kafka.sh brokers)" go test -count=1 -timeout 20m "${REAL_KAFKA_PACKAGES[@]}"
	summary+=("real Kafka pass: ${REAL_KAFKA_PACKAGES[*]} passed on Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)")
fi
