#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, broker and controller in one process) on
# loopback, for tests and benchmarks.
#
#   scripts/kafka.sh start     fetch (once), format (once), start, wait until it answers
#   scripts/kafka.sh stop      stop it (SIGTERM, then SIGKILL after 30s)
#   scripts/kafka.sh status    say whether it runs
#   scripts/kafka.sh brokers   print the bootstrap address
#
# The broker comes from Maven Central (scripts/kafka/pom.xml pins it) into
# .cache/kafka/libs; its data and logs live in .cache/kafka. Needs Java 17+
# and Maven. KAFKA_PORT (default 39092) and KAFKA_CONTROLLER_PORT (default
# 39093) choose the ports. Progress goes to stderr; `brokers` prints to stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="$ROOT/.cache/kafka"
LIBS="$CACHE/libs"
DATA="$CACHE/data"
LOGS="$CACHE/logs"
PORT="${KAFKA_PORT:-39092}"
CPORT="${KAFKA_CONTROLLER_PORT:-39093}"
PIDFILE="$CACHE/kafka.pid"
PROPS="$CACHE/server.properties"

say() { echo "kafka.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

running() {
	[[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

fetch() {
	if [[ -f "$LIBS/.complete" ]]; then
		return
	fi
	command -v java >/dev/null || die "java not found: the real-Kafka tests need Java 17+"
	command -v mvn >/dev/null || die "mvn not found: the real-Kafka tests need Maven to fetch the broker"
	say "fetching the Kafka broker from Maven Central into $LIBS (once)"
	mkdir -p "$LIBS"
	mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
		-DoutputDirectory="$LIBS" -DincludeScope=runtime >&2 || die "mvn could not fetch the broker"
	touch "$LIBS/.complete"
	say "fetched $(ls "$LIBS" | wc -l) jars"
}

configure() {
	mkdir -p "$DATA" "$LOGS"
	cat >"$PROPS" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA
num.partitions=6
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
share.coordinator.state.topic.replication.factor=1
log.retention.hours=2
PROPS
}

java_cmd() {
	java -Xms512m -Xmx512m -Dkafka.logs.dir="$LOGS" \
		-Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
		-cp "$LIBS/*" "$@"
}

format() {
	if [[ -f "$DATA/meta.properties" ]]; then
		return
	fi
	say "formatting the KRaft log directory $DATA (once)"
	local id
	id="$(java_cmd kafka.tools.StorageTool random-uuid 2>>"$LOGS/tool.log" | tail -1)"
	java_cmd kafka.tools.StorageTool format -t "$id" -c "$PROPS" >>"$LOGS/tool.log" 2>&1 ||
		{ tail -20 "$LOGS/tool.log" >&2; die "formatting failed"; }
}

start() {
	if running; then
		say "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
		return
	fi
	for p in "$PORT" "$CPORT"; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			die "port $p is taken by another process (not this checkout's broker): stop it, or set KAFKA_PORT and KAFKA_CONTROLLER_PORT"
		fi
	done
	fetch
	configure
	format
	say "starting Kafka on 127.0.0.1:$PORT"
	: >"$LOGS/server.log"
	local started=$SECONDS
	nohup bash -c "exec java -Xms512m -Xmx512m -Dkafka.logs.dir='$LOGS' \
		-Dlog4j2.configurationFile='$ROOT/scripts/kafka/log4j2.properties' \
		-cp '$LIBS/*' kafka.Kafka '$PROPS'" >"$LOGS/stdout.log" 2>&1 &
	echo $! >"$PIDFILE"
	while ! grep -q "Kafka Server started" "$LOGS/server.log" 2>/dev/null; do
		if ! running; then
			tail -30 "$LOGS/stdout.log" "$LOGS/server.log" >&2 || true
			die "the broker exited during start"
		fi
		if ((SECONDS - started > 90)); then
			tail -30 "$LOGS/server.log" >&2 || true
			stop
			die "the broker did not start within 90s"
		fi
		sleep 0.2
	done
	say "Kafka is up after $((SECONDS - started))s (pid $(cat "$PIDFILE"), logs in $LOGS)"
}

stop() {
	if ! running; then
		rm -f "$PIDFILE"
		return
	fi
	local pid
	pid="$(cat "$PIDFILE")"
	say "stopping Kafka (pid $pid)"
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; return; }
		sleep 0.2
	done
	say "still running after 30s: SIGKILL"
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$PIDFILE"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) if running; then say "running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"; else say "not running"; exit 1; fi ;;
brokers) echo "127.0.0.1:$PORT" ;;
*) echo "usage: $0 start|stop|status|brokers" >&2; exit 2 ;;
esac
