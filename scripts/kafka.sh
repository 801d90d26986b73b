#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, broker and controller in one process) on
# loopback, for tests and benchmarks.
#
#   scripts/kafka.sh start     fetch (once), format (once), start, wait until it answers
#   scripts/kafka.sh stop      stop it (SIGTERM, then SIGKILL after 30s)
#   scripts/kafka.sh status    say whether it runs and answers (exit 1 when not running)
#   scripts/kafka.sh brokers   print the bootstrap address (the only output on stdout)
#   scripts/kafka.sh reset     stop it and delete its data (topics, offsets); keeps the jars
#
# With KAFKA_SECURE=1 the same commands run a second, secured broker (see
# "Secure mode" below), and two more exist:
#
#   scripts/kafka.sh acls PREFIX  grant the shop's units their ACLs for topic prefix PREFIX
#   scripts/kafka.sh clients      print the directory of the units' librdkafka property files
#
# The broker comes from Maven Central (scripts/kafka/pom.xml pins the versions)
# into .cache/kafka/libs, fetched again only when the pom changes; its data
# and logs live in .cache/kafka. Needs Java 17+ and, for the first fetch,
# Maven. Environment:
#
#   KAFKA_PORT             broker port (default 19092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port (default 19093)
#
# The default ports lie below Linux's ephemeral range (32768-60999): a port
# in it can be held, at the moment the broker binds, as the local end of any
# outgoing connection (tests running alongside), and the broker then dies
# with "Address already in use".
#   KAFKA_CACHE            cache directory (default <repo>/.cache/kafka)
#   KAFKA_LIBS             the jars' directory (default <cache>/libs)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 90)
#
# A second broker runs beside the first with its own KAFKA_CACHE and ports;
# a libs symlink to the first cache's libs spares the fetch. The fault suite
# (internal/faulttest) runs its private broker that way, in
# .cache/kafka-faults on ports 19192 and 19193, so that it can stop it.
#
# Secure mode (KAFKA_SECURE=1): the broker listens on 127.0.0.1:19292 with
# SASL_SSL only (SCRAM-SHA-512 over TLS; its controller on 19293 with
# SASL_SSL and PLAIN, for the broker alone), authorizes every request with
# KRaft's StandardAuthorizer (no ACL, no access; super user "admin"), and
# keeps its data in .cache/kafka-secure, taking the jars of .cache/kafka/libs
# (KAFKA_LIBS). start makes, once, a CA and a broker certificate for
# 127.0.0.1 and localhost (openssl, in <cache>/tls; clients trust
# <cache>/tls/ca.pem), and, when it formats the data directory, a random
# SCRAM password for each principal: admin, gateway, usersvc, productsvc and
# ordersvc. Each one's librdkafka properties (security.protocol, SASL
# mechanism, username, password, ssl.ca.location) go to
# <cache>/clients/<principal>.properties, for --kafka-config-file. reset
# deletes the data and the passwords with it; the next start makes new ones.
# "acls PREFIX" (go run ./cmd/kafkaacl, as admin) grants each unit only its
# own topics and groups under that topic prefix (internal/kafkaacl lists
# them); run it once per prefix, after start.
#
# Starting a running broker is a no-op. Progress goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
POM="$ROOT/scripts/kafka/pom.xml"
LOG4J="$ROOT/scripts/kafka/log4j2.properties"
SECURE="${KAFKA_SECURE:-}"
if [[ "$SECURE" == 1 ]]; then
	CACHE="${KAFKA_CACHE:-$ROOT/.cache/kafka-secure}"
	LIBS="${KAFKA_LIBS:-$ROOT/.cache/kafka/libs}"
	PORT="${KAFKA_PORT:-19292}"
	CPORT="${KAFKA_CONTROLLER_PORT:-19293}"
else
	CACHE="${KAFKA_CACHE:-$ROOT/.cache/kafka}"
	LIBS="${KAFKA_LIBS:-$CACHE/libs}"
	PORT="${KAFKA_PORT:-19092}"
	CPORT="${KAFKA_CONTROLLER_PORT:-19093}"
fi
DATA="$CACHE/data"
LOGS="$CACHE/logs"
TLS="$CACHE/tls"
CLIENTS="$CACHE/clients"
# The principals of secure mode: the super user first, then one per unit.
PRINCIPALS=(admin gateway usersvc productsvc ordersvc)
TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
PIDFILE="$CACHE/kafka.pid"
PROPS="$CACHE/server.properties"
HEAP="-Xms512m -Xmx512m"

say() { echo "kafka.sh: $*" >&2; }
die() {
	say "ERROR: $*"
	exit 1
}

# show_logs prints the end of the broker's logs to stderr, for failures.
show_logs() {
	local f
	for f in "$LOGS/stdout.log" "$LOGS/server.log"; do
		if [[ -s "$f" ]]; then
			say "---- last lines of $f"
			tail -n "${1:-40}" "$f" >&2
		fi
	done
	if grep -qE '\] (ERROR|FATAL) ' "$LOGS/server.log" 2>/dev/null; then
		say "---- last errors in $LOGS/server.log"
		grep -E '\] (ERROR|FATAL) ' "$LOGS/server.log" | tail -5 >&2
	fi
}

# running succeeds when the pid file names a live broker of this cache (a
# stale pid file, say after a reboot, may name an unrelated process).
running() {
	local pid
	[[ -f "$PIDFILE" ]] || return 1
	pid="$(cat "$PIDFILE")"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $PROPS"
}

# answers succeeds when the broker answers a Kafka Metadata request (v4, all
# topics) with at least one broker in it. The broker's listener serves
# requests only once the node has caught up with the metadata log and is
# unfenced, so this means clients can work, not merely that the port is open.
# In secure mode see answers_tls.
answers() {
	if [[ "$SECURE" == 1 ]]; then
		answers_tls
		return
	fi
	local out
	out="$(timeout 5 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		# size 19 | api_key 3 | version 4 | correlation id 42 | client id "ping" | topics null | no auto-create
		printf "\x00\x00\x00\x13\x00\x03\x00\x04\x00\x00\x00\x2a\x00\x04ping\xff\xff\xff\xff\x00" >&3
		# size | correlation id | throttle ms | broker count
		od -An -tu1 -N16 <&3
	' _ "$PORT" 2>/dev/null)" || return 1
	read -r -a b <<<"$out"
	((${#b[@]} == 16)) || return 1
	# correlation id 42, and a broker count above zero
	[[ "${b[4]} ${b[5]} ${b[6]} ${b[7]}" == "0 0 0 42" ]] || return 1
	((b[12] + b[13] + b[14] + b[15] > 0))
}

# answers_tls succeeds when the secure broker completes a TLS handshake
# whose certificate verifies against the script's CA for 127.0.0.1, and
# answers an ApiVersions request (v0) with no error: the one request a SASL
# listener serves before authentication. The listener opens only once the
# broker is unfenced and its authorizer has loaded the ACLs.
answers_tls() {
	local out
	out="$(timeout 5 bash -c '
		# size 14 | api_key 18 | version 0 | correlation id 42 | client id "ping"
		{ printf "\x00\x00\x00\x0e\x00\x12\x00\x00\x00\x00\x00\x2a\x00\x04ping"; sleep 1; } |
			openssl s_client -quiet -no_ign_eof -verify_return_error -CAfile "$2" -verify_ip 127.0.0.1 \
				-connect "127.0.0.1:$1" 2>/dev/null |
			od -An -tu1 -N10
	' _ "$PORT" "$TLS/ca.pem" 2>/dev/null)" || true
	read -r -a b <<<"$out"
	((${#b[@]} == 10)) || return 1
	# correlation id 42, error code 0
	[[ "${b[4]} ${b[5]} ${b[6]} ${b[7]} ${b[8]} ${b[9]}" == "0 0 0 42 0 0" ]]
}

need_java() {
	command -v java >/dev/null || die "java not found: the real Kafka broker needs Java 17+ (apt-get install openjdk-17-jre-headless)"
	local v
	v="$(java -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -1)"
	[[ -n "$v" && "$v" -ge 17 ]] || die "Java 17+ needed, found: $(java -version 2>&1 | head -1)"
}

# fetch copies the broker's jars from Maven Central into $LIBS, once per
# version of the pom.
fetch() {
	local stamp
	stamp="$(sha256sum "$POM" | cut -d' ' -f1)"
	if [[ -f "$LIBS/.complete" && "$(cat "$LIBS/.complete")" == "$stamp" ]]; then
		return
	fi
	command -v mvn >/dev/null || die "mvn not found: Maven fetches the Kafka broker (apt-get install maven)"
	say "fetching Apache Kafka $(kafka_version) from Maven Central into $LIBS (once; under a minute)"
	rm -rf "$LIBS"
	mkdir -p "$LIBS" "$LOGS"
	local started=$SECONDS
	if ! mvn -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
		-DoutputDirectory="$LIBS" -DincludeScope=runtime >"$LOGS/mvn.log" 2>&1; then
		tail -40 "$LOGS/mvn.log" >&2
		die "mvn could not fetch the broker (output above; all of it in $LOGS/mvn.log)"
	fi
	ls "$LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 || die "mvn ran but $LIBS has no kafka_2.13 jar"
	echo "$stamp" >"$LIBS/.complete"
	say "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - started))s"
}

kafka_version() {
	sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM"
}

configure() {
	mkdir -p "$DATA" "$LOGS"
	local listeners
	if [[ "$SECURE" == 1 ]]; then
		listeners="$(secure_listeners)"
	else
		listeners="listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
auto.create.topics.enable=true"
	fi
	(
		umask 077 # secure mode: the properties hold passwords
		cat >"$PROPS" <<PROPS
# Written by scripts/kafka.sh; edits are lost at the next start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
$listeners
log.dirs=$DATA
num.partitions=6
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
default.replication.factor=1
group.initial.rebalance.delay.ms=0
log.retention.hours=2
log.segment.bytes=16777216
PROPS
	)
}

# secure_listeners prints the listener, TLS, SASL and authorizer settings of
# secure mode. Clients and the broker itself use SCRAM-SHA-512 over TLS on
# the SASL_SSL listener; the controller listener takes SASL PLAIN over TLS
# with one user, the broker (KRaft cannot use SCRAM there: the credentials
# live in the metadata the controller serves). Nothing is plaintext, and
# no one is allowed anything without an ACL but the super user admin.
secure_listeners() {
	local admin ctrl
	admin="$(password admin)"
	ctrl="$(cat "$CLIENTS/.controller")"
	cat <<PROPS
listeners=SASL_SSL://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=SASL_SSL://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_SSL
inter.broker.listener.name=SASL_SSL
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$ctrl" user_admin="$ctrl";
ssl.keystore.type=PEM
ssl.keystore.location=$TLS/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.pem
ssl.client.auth=none
ssl.endpoint.identification.algorithm=https
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
auto.create.topics.enable=false
PROPS
}

# make_tls makes, once, a CA and a certificate for the broker signed by it,
# valid for 127.0.0.1 and localhost. Clients trust $TLS/ca.pem.
make_tls() {
	if [[ -s "$TLS/ca.pem" && -s "$TLS/broker-keystore.pem" ]]; then
		return
	fi
	command -v openssl >/dev/null || die "openssl not found: secure mode makes its certificates with it"
	say "making a CA and a broker certificate in $TLS (once)"
	rm -rf "$TLS"
	mkdir -p "$TLS"
	(
		umask 077
		cd "$TLS"
		openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kgrpc test CA" \
			-keyout ca.key -out ca.pem \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
		openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout broker.key -out broker.csr
		printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:127.0.0.1" \
			"basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" \
			"extendedKeyUsage=serverAuth,clientAuth" >broker.ext
		openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
			-extfile broker.ext -out broker.pem
		# A PEM keystore: the PKCS#8 key, then the chain.
		openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker-key.pem
		cat broker-key.pem broker.pem ca.pem >broker-keystore.pem
		chmod 644 ca.pem
	) >>"$LOGS/tool.log" 2>&1 || {
		tail -20 "$LOGS/tool.log" >&2
		die "openssl could not make the certificates"
	}
}

# password prints the SCRAM password of principal $1.
password() {
	sed -n 's/^sasl\.password=//p' "$CLIENTS/$1.properties"
}

# make_credentials makes a random password for every principal and writes
# each one's librdkafka properties; the controller's PLAIN password goes
# to $CLIENTS/.controller. It runs when the data directory is formatted
# (format adds the SCRAM credentials), so passwords and data go together.
make_credentials() {
	say "making SCRAM passwords and client properties in $CLIENTS"
	rm -rf "$CLIENTS"
	mkdir -p "$CLIENTS"
	(
		umask 077
		local p
		openssl rand -hex 24 >"$CLIENTS/.controller"
		for p in "${PRINCIPALS[@]}"; do
			cat >"$CLIENTS/$p.properties" <<PROPS
# librdkafka properties of principal $p on the secure broker 127.0.0.1:$PORT
# (scripts/kafka.sh, KAFKA_SECURE=1); for --kafka-config-file.
security.protocol=SASL_SSL
sasl.mechanisms=SCRAM-SHA-512
sasl.username=$p
sasl.password=$(openssl rand -hex 24)
ssl.ca.location=$TLS/ca.pem
PROPS
		done
	)
}

# scram_args prints the StorageTool arguments that add every principal's
# SCRAM credentials, one per line.
scram_args() {
	local p
	for p in "${PRINCIPALS[@]}"; do
		echo "--add-scram"
		echo "SCRAM-SHA-512=[name=$p,password=$(password "$p")]"
	done
}

java_cmd() {
	# shellcheck disable=SC2086 # HEAP is two words on purpose
	java $HEAP -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$LOG4J" \
		-cp "$LIBS/*" "$@"
}

# format writes the KRaft metadata into an empty log directory, once.
format() {
	if [[ -f "$DATA/meta.properties" ]]; then
		return
	fi
	say "formatting the KRaft log directory $DATA (once)"
	local id
	id="$(java_cmd kafka.tools.StorageTool random-uuid 2>>"$LOGS/tool.log" | tail -1)"
	[[ -n "$id" ]] || {
		tail -20 "$LOGS/tool.log" >&2
		die "kafka.tools.StorageTool random-uuid printed nothing"
	}
	local extra=()
	[[ "$SECURE" == 1 ]] && mapfile -t extra < <(scram_args)
	java_cmd kafka.tools.StorageTool format --cluster-id "$id" --config "$PROPS" "${extra[@]}" >>"$LOGS/tool.log" 2>&1 || {
		tail -20 "$LOGS/tool.log" >&2
		die "formatting $DATA failed"
	}
}

start() {
	if running; then
		if answers; then
			say "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
			return
		fi
		say "pid $(cat "$PIDFILE") runs but does not answer yet; waiting"
	else
		rm -f "$PIDFILE"
		for p in "$PORT" "$CPORT"; do
			if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
				die "port $p is taken by another process (not this checkout's broker): stop it, or set KAFKA_PORT and KAFKA_CONTROLLER_PORT"
			fi
		done
		need_java
		fetch
		if [[ "$SECURE" == 1 ]]; then
			mkdir -p "$LOGS"
			make_tls
			if [[ ! -f "$DATA/meta.properties" ]]; then
				make_credentials
			elif [[ ! -f "$CLIENTS/admin.properties" || ! -f "$CLIENTS/.controller" ]]; then
				die "$DATA is formatted but $CLIENTS lost its passwords: scripts/kafka.sh reset (with KAFKA_SECURE=1) starts afresh"
			fi
		fi
		configure
		format
		local kind=""
		[[ "$SECURE" == 1 ]] && kind=" (SASL_SSL, SCRAM-SHA-512, ACLs)"
		say "starting Apache Kafka $(kafka_version)$kind on 127.0.0.1:$PORT (controller on $CPORT, logs in $LOGS)"
		: >"$LOGS/server.log"
		: >"$LOGS/stdout.log"
		# setsid: the broker outlives this shell and is not hit by its job's signals.
		# shellcheck disable=SC2086
		setsid java $HEAP -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$LOG4J" \
			-cp "$LIBS/*" kafka.Kafka "$PROPS" </dev/null >"$LOGS/stdout.log" 2>&1 &
		echo $! >"$PIDFILE"
	fi
	local started=$SECONDS
	until answers; do
		if ! running; then
			show_logs
			rm -f "$PIDFILE"
			die "the broker exited during start (logs above)"
		fi
		if ((SECONDS - started >= TIMEOUT)); then
			show_logs
			stop
			die "the broker did not answer on 127.0.0.1:$PORT within ${TIMEOUT}s (logs above)"
		fi
		sleep 0.25
	done
	say "Kafka answers on 127.0.0.1:$PORT after $((SECONDS - started))s (pid $(cat "$PIDFILE"))"
}

stop() {
	if ! running; then
		rm -f "$PIDFILE"
		say "not running"
		return
	fi
	local pid
	pid="$(cat "$PIDFILE")"
	say "stopping Kafka (pid $pid)"
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 150); do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$PIDFILE"
			say "stopped"
			return
		fi
		sleep 0.2
	done
	say "still running after 30s: SIGKILL"
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$PIDFILE"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status)
	if ! running; then
		say "not running"
		exit 1
	fi
	if answers; then
		say "running (pid $(cat "$PIDFILE")) and answering on 127.0.0.1:$PORT"
	else
		say "running (pid $(cat "$PIDFILE")) but not answering on 127.0.0.1:$PORT"
	fi
	;;
brokers) echo "127.0.0.1:$PORT" ;;
acls)
	[[ "$SECURE" == 1 ]] || die "acls is for the secure broker: KAFKA_SECURE=1 scripts/kafka.sh acls PREFIX"
	[[ $# -le 2 ]] || die "usage: KAFKA_SECURE=1 $0 acls [PREFIX]"
	[[ -f "$CLIENTS/admin.properties" ]] || die "no $CLIENTS/admin.properties: start the secure broker first"
	command -v go >/dev/null || die "go not found: the ACLs are granted by go run ./cmd/kafkaacl"
	(cd "$ROOT" && go run ./cmd/kafkaacl --brokers "127.0.0.1:$PORT" \
		--kafka-config-file "$CLIENTS/admin.properties" --topic-prefix "${2:-}")
	;;
clients)
	[[ "$SECURE" == 1 ]] || die "clients is for the secure broker: KAFKA_SECURE=1 scripts/kafka.sh clients"
	echo "$CLIENTS"
	;;
reset)
	stop
	say "deleting $DATA"
	rm -rf "$DATA"
	if [[ "$SECURE" == 1 ]]; then
		# The SCRAM passwords went with the data; the next start makes new ones.
		rm -rf "$CLIENTS"
	fi
	;;
*)
	echo "usage: $0 start|stop|status|brokers|reset (KAFKA_SECURE=1: also acls [PREFIX], clients)" >&2
	exit 2
	;;
esac
