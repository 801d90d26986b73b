# Build tasks. buf runs from the tools module (tools/go.mod) and the protoc
# plugins from go.mod's tool directives, so every version is pinned and
# nothing is fetched from the Buf Schema Registry.

BUF := go tool -modfile=tools/go.mod buf

.PHONY: run test check bench generate lint check-generated breaking

# run starts the whole shop on embedded defaults (see README.md).
run:
	go run ./cmd/platform

# test runs every test (scripts/test.sh): with a throwaway PostgreSQL
# (scripts/postgres.sh) for the repository suites, all packages on the
# in-process kfake broker with the race detector, then the transport
# conformance suite, the shop's end-to-end suite and the scale-out test again
# on a real Apache Kafka (scripts/kafka.sh) when Java and Maven are present
# or CI=true, then the fault suite and the SASL_SSL + ACL suite.
test:
	bash scripts/test.sh

# check is what CI runs before the tests: generated code fresh, lint clean.
check: check-generated lint

# bench prints the transport's round-trip numbers next to the raw
# confluent-kafka-go ping-pong floor on the same broker.
bench:
	go -C kafkatransport test . -run '^$$' -bench 'RawPingPong|Transport|StartToFirstCall' -benchtime 3s -count 1

# generate rebuilds gen/ from proto/ and kafkatransport/gen/ from
# kafkatransport/proto/. protoc-gen-go-kafka is built into .bin/ first
# because it imports kafkatransport/gen/kgrpc/kafka/v1, which buf generate
# deletes (clean: true) before writing fresh output.
#
# proto/openapi.yaml, the OpenAPI options protoc-gen-openapiv2 reads, is
# proto/openapi.base.yaml plus the required fields and limits of the
# buf.validate rules (internal/tools/openapirules), which then adds the
# limits protoc-gen-openapiv2 leaves out of path and query parameters
# (minLength, maxLength, minimum, maximum) to gateway/openapiv2/shop.swagger.json.
#
# examples/greeter generates with its own go tool plugins, as docs/guide.md
# shows, from its copy of options.proto, rewritten first.
generate:
	bash scripts/vendor-protovalidate.sh
	go build -o .bin/protoc-gen-go-kafka github.com/kgrpc/platform/kafkatransport/cmd/protoc-gen-go-kafka
	$(BUF) generate --template kafkatransport/buf.gen.yaml
	$(BUF) build -o .bin/shop.binpb
	go run ./internal/tools/openapirules -image .bin/shop.binpb -base proto/openapi.base.yaml -out proto/openapi.yaml
	$(BUF) generate
	go run ./internal/tools/openapirules -image .bin/shop.binpb -swagger gateway/openapiv2/shop.swagger.json
	.bin/protoc-gen-go-kafka --write-options examples/greeter/proto >/dev/null
	cd examples/greeter && go tool -modfile=../../tools/go.mod buf generate

# lint checks the protos (buf STANDARD), Go formatting and go vet.
lint:
	$(BUF) lint
	@out="$$(git ls-files -z --cached --others --exclude-standard '*.go' | xargs -0 -r gofmt -l)"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	go -C kafkatransport vet ./...
	go -C examples/greeter vet ./...
	go -C deploy/k8s vet ./...
	cd examples/greeter && go tool -modfile=../../tools/go.mod buf lint

# check-generated fails when gen/ differs from what the protos generate.
check-generated: generate
	git diff --exit-code -- gen/ kafkatransport/gen/ gateway/openapiv2/ examples/greeter/gen/ examples/greeter/proto/ proto/openapi.yaml third_party/
	@untracked="$$(git ls-files --others --exclude-standard -- gen/ kafkatransport/gen/ gateway/openapiv2/ examples/greeter/gen/ examples/greeter/proto/ proto/openapi.yaml third_party/)"; \
	if [ -n "$$untracked" ]; then echo "untracked generated files:"; echo "$$untracked"; exit 1; fi

# breaking checks the protos for breaking changes against the main branch.
breaking:
	$(BUF) breaking --against '.git#branch=main'
