#!/usr/bin/env bash
# Copies buf/validate/validate.proto, the protovalidate rules the shop's
# protos import, from the Go module github.com/bufbuild/protovalidate at
# the pinned version into third_party/protovalidate, a module of the buf
# workspace (buf.yaml). The Buf Schema Registry is not reachable from our
# build machines; the Go module proxy is. The runtime that enforces the
# rules is buf.build/go/protovalidate (go.mod), whose compiled copy of the
# file is at least as new as this one (TestRulesKnownToRuntime checks that
# every rule the protos use is known to it).
#
#   scripts/vendor-protovalidate.sh            # copy (make generate runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
version=v1.2.2
dir=$(go mod download -json "github.com/bufbuild/protovalidate@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
out=third_party/protovalidate/buf/validate
mkdir -p "$out"
install -m 0644 "$dir/proto/protovalidate/buf/validate/validate.proto" "$out/validate.proto"
install -m 0644 "$dir/LICENSE" third_party/protovalidate/LICENSE
