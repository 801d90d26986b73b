// Package kgrpcproto holds the transport's .proto sources that other buf
// workspaces need, for tools that run outside this module:
// `protoc-gen-go-kafka --write-options DIR` copies options.proto from here
// into a user's proto tree, so that their protos can import
// "kgrpc/kafka/v1/options.proto" without the Buf Schema Registry.
package kgrpcproto

import "embed"

// OptionsPath is options.proto's path, relative to a proto root.
const OptionsPath = "kgrpc/kafka/v1/options.proto"

// FS holds OptionsPath.
//
//go:embed kgrpc/kafka/v1/options.proto
var FS embed.FS
