#!/usr/bin/env bash
# Every test, as `make test` (the README's test command) and CI run it:
#
#   0. Chromium (scripts/chromium.sh installs Debian's when missing) for the
#      browser test of GET /docs; PostgreSQL, when scripts/postgres.sh exists: `scripts/postgres.sh start`
#      prints a DSN, exported as TEST_POSTGRES_DSN for every pass (a
#      TEST_POSTGRES_DSN already in the environment is used as it is);
#   1. go test -race ./... with the in-process kfake broker, in each Go
#      module of the repository (MODULES: the shop's, the transport's);
#      then the Python client's tests (scripts/python.sh test: the wire
#      vectors, and calls of cmd/platform on its embedded broker);
#   2. the suites of REAL_KAFKA_PACKAGES (and REAL_KAFKA_TRANSPORT_PACKAGES,
#      in the transport's module) again against a real Apache Kafka broker
#      (scripts/kafka.sh), when Java and Maven are present or CI=true, and
#      the Python client's real_kafka tests (cmd/platform on that broker);
#   3. the fault suite (internal/faulttest, FAULT_SUITE=1), alone, after the
#      others: it stops and starts a broker of its own, a private Apache
#      Kafka when pass 2 runs (ports 19192-19193, cache .cache/kafka-faults
#      sharing the jars of .cache/kafka), devkafka otherwise. Its figure
#      lines are repeated in the summary. SKIP_FAULTS=1 skips it outside CI.
#   4. the secure-channel suite (internal/securetest, SECURE_SUITE=1) when
#      pass 2 runs: `KAFKA_SECURE=1 scripts/kafka.sh` starts a SASL_SSL
#      broker with ACLs (ports 19292-19293, cache .cache/kafka-secure, the
#      jars of .cache/kafka), the split binaries run over it as their own
#      principals, and the broker is stopped again. A broker that does not
#      start fails the pass. SKIP_SECURE=1 skips it outside CI.
#
# When CI=true, or when Java and Maven are present, a real broker that cannot
# start fails the run; so does a PostgreSQL that cannot start in CI. A pass
# that did not run is reported as NOT RUN in the closing summary, never as
# passed. Every pass runs even when an earlier one fails, so one CI log shows
# everything. SKIP_REAL_KAFKA=1 skips pass 2 outside CI.
#
# A broker that was already running (scripts/kafka.sh start) is used and left
# running; otherwise this starts one on an empty data directory and stops it
# at the end. The same goes for PostgreSQL (scripts/postgres.sh start).
set -euo pipefail
cd "$(dirname "$0")/.."

# The Go modules whose every package pass 1 tests: the shop's (the root),
# the transport's, which the shop requires through a replace directive, and
# the guide's example (docs/guide.md), which does too, and the Kubernetes
# manifests' check (deploy/k8s: kustomize and the Kubernetes API types).
MODULES=(. kafkatransport examples/greeter deploy/k8s)
# The suites that take their broker from KAFKA_BROKERS: in the shop's
# module, and in the transport's.
REAL_KAFKA_PACKAGES=(./internal/idemtest ./internal/guidetest ./gateway ./internal/outbox ./cmd/platform ./internal/scaletest ./internal/observetest)
REAL_KAFKA_TRANSPORT_PACKAGES=(.)

GO_TIMEOUT=20m
CI="${CI:-}"
LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/kgrpc-test.XXXXXX")"

status_kfake="NOT RUN"
status_real="NOT RUN"
status_faults="NOT RUN"
status_secure="NOT RUN"
status_python="NOT RUN"
status_python_real="NOT RUN: it runs in pass 2, with the real broker"
status_chromium="NOT CHECKED"
figures=()
status_pg="NOT RUN (no scripts/postgres.sh, no TEST_POSTGRES_DSN)"
failed=0
pkgs_ok=0
pkgs_failed=0
started_kafka=false
started_secure=false
started_pg=false
started_at=$SECONDS

say() { echo "test.sh: $*" >&2; }
banner() {
	echo
	echo "================================================================"
	echo "== $*"
	echo "================================================================"
}

# gotest runs go test with the given arguments (in the module directory
# GOTEST_DIR when set), shows its output, and counts the packages that
# passed and failed.
gotest() {
	local log="${GOTEST_LOG:-$LOGDIR/pass$((pkgs_ok + pkgs_failed))-$RANDOM.log}" rc=0
	go -C "${GOTEST_DIR:-.}" test "$@" 2>&1 | tee "$log" || rc=$?
	pkgs_ok=$((pkgs_ok + $(grep -cE '^ok[[:space:]]' "$log" || true)))
	pkgs_failed=$((pkgs_failed + $(grep -cE '^FAIL[[:space:]]' "$log" || true)))
	if ((rc != 0)); then
		echo "---- failed tests:"
		grep -E '^(--- FAIL|FAIL|panic:)' "$log" || echo "(no test failed: build error or timeout? see above)"
	fi
	return "$rc"
}

finish() {
	local rc=$?
	set +e
	if [[ "$started_kafka" == true ]]; then
		scripts/kafka.sh stop
	fi
	if [[ "$started_secure" == true ]]; then
		secure_kafka stop
	fi
	if [[ "$started_pg" == true ]]; then
		bash scripts/postgres.sh stop >&2
	fi
	rm -rf "$LOGDIR"
	((rc != 0)) && failed=1
	banner "test summary ($((SECONDS - started_at))s)"
	echo "kfake pass (go test -race ./..., ${#MODULES[@]} modules): $status_kfake"
	echo "Python client (clients/python, kfake):   $status_python"
	echo "real Apache Kafka pass:                  $status_real"
	echo "Python client on real Apache Kafka:      $status_python_real"
	echo "fault suite (internal/faulttest):        $status_faults"
	if ((${#figures[@]})); then
		printf '    %s\n' "${figures[@]}"
	fi
	echo "secure channels (internal/securetest):   $status_secure"
	echo "PostgreSQL (TEST_POSTGRES_DSN):          $status_pg"
	echo "Chromium (TestDocsPage):                 $status_chromium"
	if ((failed)); then
		echo "RESULT: FAILED"
	else
		echo "RESULT: ok"
	fi
	echo "packages: $pkgs_ok passed, $pkgs_failed failed"
	exit "$failed"
}
trap finish EXIT
trap 'exit 130' INT TERM

# The secure broker of pass 4 (scripts/kafka.sh with KAFKA_SECURE=1): its
# own cache and ports whatever KAFKA_CACHE and KAFKA_PORT say, and the jars
# of the plain broker's cache.
SECURE_CACHE="$PWD/.cache/kafka-secure"
SECURE_LIBS="${KAFKA_CACHE:-$PWD/.cache/kafka}/libs"
secure_kafka() {
	KAFKA_SECURE=1 KAFKA_CACHE="$SECURE_CACHE" KAFKA_LIBS="$SECURE_LIBS" KAFKA_PORT=19292 \
		KAFKA_CONTROLLER_PORT=19293 KAFKA_START_TIMEOUT=60 bash scripts/kafka.sh "$@"
}

# ---- PostgreSQL
if [[ -n "${TEST_POSTGRES_DSN:-}" ]]; then
	status_pg="used TEST_POSTGRES_DSN from the environment"
elif [[ -f scripts/postgres.sh ]]; then
	banner "PostgreSQL: scripts/postgres.sh start"
	already=false
	bash scripts/postgres.sh status 2>/dev/null && already=true
	if dsn="$(bash scripts/postgres.sh start)" && dsn="$(printf '%s\n' "$dsn" | sed '/^[[:space:]]*$/d' | tail -1)" && [[ -n "$dsn" ]]; then
		# One that was already running is used and left running.
		[[ "$already" == true ]] || started_pg=true
		export TEST_POSTGRES_DSN="$dsn"
		status_pg="ran: scripts/postgres.sh started PostgreSQL for every pass"
		echo "TEST_POSTGRES_DSN is set for every pass"
	elif [[ "$CI" == true ]]; then
		status_pg="FAILED: scripts/postgres.sh start failed (CI=true needs it)"
		say "ERROR: scripts/postgres.sh start failed or printed no DSN; CI needs PostgreSQL"
		exit 1
	else
		started_pg=true # stop whatever it may have left half-started
		status_pg="NOT RUN: scripts/postgres.sh start failed (see above); the PostgreSQL tests were skipped"
		say "WARNING: scripts/postgres.sh start failed; the PostgreSQL tests will skip"
	fi
fi

# ---- Chromium, for the browser test of GET /docs (cmd/platform TestDocsPage,
# which finds it in CHROMIUM).
if ! command -v chromium >/dev/null; then
	banner "Chromium: scripts/chromium.sh install"
fi
if chromium_path="$(bash scripts/chromium.sh install)"; then
	export CHROMIUM="$chromium_path"
	status_chromium="$chromium_path ($("$chromium_path" --version 2>/dev/null || echo 'version unknown'))"
elif [[ "$CI" == true ]]; then
	say "ERROR: Chromium could not be installed; CI needs it for TestDocsPage"
	exit 1
else
	status_chromium="NOT AVAILABLE: TestDocsPage skipped (install Debian's chromium, or run as root)"
	say "WARNING: no Chromium: TestDocsPage will skip"
fi

# ---- pass 1: kfake
banner "pass 1: every package of ${MODULES[*]}, in-process kfake broker, race detector"
unset KAFKA_BROKERS # pass 2 sets it explicitly
status_kfake="passed"
for m in "${MODULES[@]}"; do
	echo "-- module $m"
	if ! GOTEST_DIR="$m" gotest -race -count=1 -timeout "$GO_TIMEOUT" ./...; then
		status_kfake="FAILED (see the failed tests above)"
		failed=1
	fi
done

# The Python client (clients/python): its generated code is fresh, mypy
# --strict, then pytest: the wire vectors and cmd/platform on its embedded
# broker (the real_kafka tests are deselected: KAFKA_BROKERS is unset here).
banner "pass 1: the Python client (scripts/python.sh test)"
pylog="$LOGDIR/python.log"
if bash scripts/python.sh test 2>&1 | tee "$pylog"; then
	status_python="passed: $(grep -E '^=+ .*(passed|failed).* =+$' "$pylog" | tail -1 | tr -d '=' | sed 's/^ *//; s/ *$//')"
else
	status_python="FAILED (see the Python output above)"
	failed=1
fi

# ---- pass 2: real Apache Kafka
want_real=false
if [[ "$CI" == true ]]; then
	want_real=true
elif [[ "${SKIP_REAL_KAFKA:-}" == 1 ]]; then
	status_real="NOT RUN (SKIP_REAL_KAFKA=1)"
elif command -v java >/dev/null && command -v mvn >/dev/null; then
	want_real=true
else
	status_real="NOT RUN: no Java 17 and Maven on this machine (CI always runs it)"
	say "WARNING: java or mvn missing: the real Apache Kafka pass does not run here"
fi

if [[ "$want_real" == true ]]; then
	banner "pass 2: ${REAL_KAFKA_PACKAGES[*]} and kafkatransport ${REAL_KAFKA_TRANSPORT_PACKAGES[*]} against real Apache Kafka"
	kafka_ok=true
	if scripts/kafka.sh status 2>/dev/null; then
		say "using the broker that is already running (left running afterwards)"
	else
		started_kafka=true
		# An empty data directory: old test topics only slow the start down.
		scripts/kafka.sh reset
		scripts/kafka.sh start || kafka_ok=false
	fi
	if [[ "$kafka_ok" != true ]]; then
		status_real="FAILED: the Kafka broker did not start (scripts/kafka.sh output above)"
		failed=1
	else
		brokers="$(scripts/kafka.sh brokers)"
		version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)"
		real_ok=true
		KAFKA_BROKERS="$brokers" GOTEST_DIR=kafkatransport gotest -count=1 -timeout "$GO_TIMEOUT" "${REAL_KAFKA_TRANSPORT_PACKAGES[@]}" || real_ok=false
		KAFKA_BROKERS="$brokers" gotest -count=1 -timeout "$GO_TIMEOUT" "${REAL_KAFKA_PACKAGES[@]}" || real_ok=false
		pyrlog="$LOGDIR/python-real.log"
		if KAFKA_BROKERS="$brokers" bash scripts/python.sh test -m real_kafka 2>&1 | tee "$pyrlog"; then
			status_python_real="passed on Apache Kafka $version at $brokers: $(grep -E '^=+ .*(passed|failed).* =+$' "$pyrlog" | tail -1 | tr -d '=' | sed 's/^ *//; s/ *$//')"
		else
			status_python_real="FAILED on Apache Kafka $version at $brokers (see the Python output above)"
			real_ok=false
		fi
		if [[ "$real_ok" == true ]]; then
			status_real="passed on Apache Kafka $version at $brokers: kafkatransport ${REAL_KAFKA_TRANSPORT_PACKAGES[*]}, ${REAL_KAFKA_PACKAGES[*]}"
		else
			status_real="FAILED on Apache Kafka $version at $brokers (see the failed tests above)"
			failed=1
			echo "---- last warnings and errors of the broker (${KAFKA_CACHE:-.cache/kafka}/logs/server.log):"
			grep -E '\] (WARN|ERROR) ' "${KAFKA_CACHE:-.cache/kafka}/logs/server.log" | tail -40 || true
		fi
	fi
fi

# ---- pass 3: the fault suite, alone: it loads the machine and stops its
# own broker.
if [[ "${SKIP_FAULTS:-}" == 1 && "$CI" != true ]]; then
	status_faults="NOT RUN (SKIP_FAULTS=1)"
else
	fault_broker=devkafka
	[[ "$want_real" == true ]] && fault_broker=kafka
	banner "pass 3: fault suite (internal/faulttest) on its own broker ($fault_broker)"
	faultlog="$LOGDIR/faults.log"
	if FAULT_SUITE=1 FAULT_BROKER="$fault_broker" GOTEST_LOG="$faultlog" \
		gotest -count=1 -timeout 10m -v -run '^TestFaults$' ./internal/faulttest; then
		status_faults="passed on $fault_broker"
	else
		status_faults="FAILED on $fault_broker (see the FAILED figures and failed tests above)"
		failed=1
	fi
	mapfile -t figures < <(grep -o 'figure: .*' "$faultlog" | sed 's/^figure: //' || true)
fi

# ---- pass 4: secure channels, on a broker of their own that this starts
# and stops: SASL_SSL with SCRAM-SHA-512 and ACLs.
if [[ "$want_real" != true ]]; then
	status_secure="NOT RUN: it runs where pass 2 runs (Java 17 and Maven present, or CI=true)"
elif [[ "${SKIP_SECURE:-}" == 1 && "$CI" != true ]]; then
	status_secure="NOT RUN (SKIP_SECURE=1)"
else
	banner "pass 4: secure channels (internal/securetest) on a SASL_SSL broker with ACLs"
	secure_ok=true
	if secure_kafka status 2>/dev/null; then
		say "using the secure broker that is already running (left running afterwards)"
	else
		started_secure=true
		# An empty data directory: new SCRAM passwords, no old topics or ACLs.
		secure_kafka reset
		secure_kafka start || secure_ok=false
	fi
	if [[ "$secure_ok" != true ]]; then
		status_secure="FAILED: the secure Kafka broker did not start (scripts/kafka.sh output above)"
		failed=1
	else
		securelog="$LOGDIR/secure.log"
		secure_began=$SECONDS
		if SECURE_SUITE=1 KAFKA_SECURE=1 KAFKA_CACHE="$SECURE_CACHE" KAFKA_LIBS="$SECURE_LIBS" KAFKA_PORT=19292 \
			KAFKA_CONTROLLER_PORT=19293 GOTEST_LOG="$securelog" \
			gotest -count=1 -timeout 3m -v -run '^TestSecureChannels$' ./internal/securetest &&
			grep -q -- '^--- PASS: TestSecureChannels' "$securelog"; then
			status_secure="passed in $((SECONDS - secure_began))s on SASL_SSL (SCRAM-SHA-512, TLS) with per-unit ACLs at $(secure_kafka brokers)"
		else
			status_secure="FAILED (see the failed tests above; broker logs in $SECURE_CACHE/logs)"
			failed=1
		fi
	fi
	if [[ "$started_secure" == true ]]; then
		secure_kafka stop
		started_secure=false
	fi
fi
