#!/usr/bin/env bash
# The Python client (clients/python): its virtual environment, its
# generated protobuf code and its tests.
#
#   scripts/python.sh venv          make or update .cache/python-venv from
#                                   clients/python/requirements.lock (PyPI)
#   scripts/python.sh gen           regenerate clients/python/src from the
#                                   protos with grpcio-tools' protoc (the
#                                   shop's, the envelopes and options, the
#                                   transport's echo test service of the
#                                   wire vectors, protovalidate's)
#   scripts/python.sh check-gen     fail when the committed generated code
#                                   differs from what gen makes (drift)
#   scripts/python.sh mypy          mypy --strict on the kgrpc package
#   scripts/python.sh test [ARGS]   venv, check-gen, mypy, build the Go shop
#                                   (.bin/platform) and CLI (.bin/kgrpc, which
#                                   reads the dead letters the Python
#                                   subscriber writes), then pytest ARGS, bounded
#                                   by PYTHON_TEST_TIMEOUT (300s)
#
# Without KAFKA_BROKERS the tests marked real_kafka are deselected, and the
# run says so; with it they run against that cluster (scripts/test.sh's
# pass 2 runs `scripts/python.sh test -m real_kafka`). ARGS with -m replace
# that choice.
set -euo pipefail
cd "$(dirname "$0")/.."

PY_DIR=clients/python
VENV="${PYTHON_VENV:-$PWD/.cache/python-venv}"
LOCK="$PY_DIR/requirements.lock"
PYTHON="${PYTHON:-python3.11}"

say() { echo "python.sh: $*" >&2; }

venv() {
	local stamp="$VENV/.lock.sha256" want
	want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
	if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
		return 0
	fi
	command -v "$PYTHON" >/dev/null || PYTHON=python3
	say "making $VENV from $LOCK"
	rm -rf "$VENV"
	"$PYTHON" -m venv "$VENV"
	timeout 600 "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$LOCK"
	"$VENV/bin/pip" check >&2
	echo "$want" >"$stamp"
}

# generate writes the Python code of the protos under directory $1.
generate() {
	local out="$1" protos
	mkdir -p "$out"
	mapfile -t protos < <(cd proto && find shop -name '*.proto' | sort)
	"$VENV/bin/python" -m grpc_tools.protoc -I proto -I kafkatransport/proto -I third_party/protovalidate \
		--python_out="$out" --pyi_out="$out" \
		"${protos[@]}" kgrpc/kafka/v1/envelope.proto kgrpc/kafka/v1/options.proto kgrpc/testing/v1/echo.proto \
		buf/validate/validate.proto
	# Regular packages rather than namespace ones, for mypy and setuptools.
	find "$out/shop" "$out/buf" "$out/kgrpc/kafka" "$out/kgrpc/testing" -type d -exec touch {}/__init__.py \;
}

# The directories gen owns inside clients/python/src.
GEN_DIRS=(shop buf kgrpc/kafka kgrpc/testing)

gen() {
	venv
	local tmp
	tmp="$(mktemp -d)"
	generate "$tmp"
	for d in "${GEN_DIRS[@]}"; do
		rm -rf "${PY_DIR:?}/src/$d"
		mkdir -p "$(dirname "$PY_DIR/src/$d")"
		cp -r "$tmp/$d" "$PY_DIR/src/$d"
	done
	rm -rf "$tmp"
	say "regenerated ${GEN_DIRS[*]} in $PY_DIR/src"
}

check_gen() {
	venv
	local tmp rc=0
	tmp="$(mktemp -d)"
	generate "$tmp"
	for d in "${GEN_DIRS[@]}"; do
		diff -r "$tmp/$d" "$PY_DIR/src/$d" >&2 || rc=1
	done
	rm -rf "$tmp"
	if ((rc)); then
		say "ERROR: the generated Python code in $PY_DIR/src is stale: run scripts/python.sh gen and commit it"
		return 1
	fi
	say "generated Python code is up to date"
}

run_mypy() {
	venv
	(cd "$PY_DIR" && "$VENV/bin/mypy" --no-error-summary) || { say "ERROR: mypy --strict failed"; return 1; }
	say "mypy --strict: ok"
}

run_tests() {
	venv
	check_gen
	run_mypy
	mkdir -p .bin
	say "building .bin/platform and .bin/kgrpc"
	go build -o .bin/platform ./cmd/platform
	go build -o .bin/kgrpc ./cmd/kgrpc
	local args=("$@") marked=false
	for a in "${args[@]}"; do [[ "$a" == -m ]] && marked=true; done
	if [[ "$marked" == false ]]; then
		if [[ -z "${KAFKA_BROKERS:-}" ]]; then
			say "KAFKA_BROKERS is unset: the real_kafka tests are deselected (scripts/test.sh's pass 2 runs them)"
			args+=(-m "not real_kafka")
		fi
	fi
	PLATFORM_BIN="$PWD/.bin/platform" KGRPC_BIN="$PWD/.bin/kgrpc" REPO_ROOT="$PWD" \
		timeout --kill-after=10 "${PYTHON_TEST_TIMEOUT:-300}" \
		"$VENV/bin/python" -m pytest -c "$PY_DIR/pyproject.toml" --rootdir "$PY_DIR" -p no:cacheprovider -ra "${args[@]}" "$PY_DIR/tests"
}

case "${1:-test}" in
venv) venv ;;
gen) gen ;;
check-gen) check_gen ;;
mypy) run_mypy ;;
test)
	shift || true
	run_tests "$@"
	;;
*)
	echo "usage: scripts/python.sh [venv|gen|check-gen|mypy|test [pytest args]]" >&2
	exit 2
	;;
esac
