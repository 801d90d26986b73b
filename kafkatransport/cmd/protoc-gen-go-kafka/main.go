// Command protoc-gen-go-kafka is a protoc plugin that generates the Kafka
// transport glue of github.com/kgrpc/platform/kafkatransport for the services
// and event messages of a protobuf file: request topics, partition-key
// functions, one-line client and server constructors, and typed event
// publishers and subscribers.
//
// It reads the custom options of kgrpc/kafka/v1/options.proto and expects
// protoc-gen-go and protoc-gen-go-grpc output in the same Go package. Run it
// through buf with paths=source_relative, next to those plugins.
//
// Run by hand, it also serves the protos that use those options:
//
//	protoc-gen-go-kafka --write-options proto   # writes proto/kgrpc/kafka/v1/options.proto
//	protoc-gen-go-kafka --version
//
// The written options.proto is the one this plugin reads, with its
// go_package naming github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1:
// generate code for your own files only (buf: exclude_paths), and keep
// buf's managed mode off that file (managed: disable: path).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/compiler/protogen"

	kgrpcproto "github.com/kgrpc/platform/kafkatransport/proto"
)

// version is the plugin version written into every generated file's header.
const version = "v0.1.0"

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Fprintln(os.Stdout, "protoc-gen-go-kafka", version)
		os.Exit(0)
	}
	if len(os.Args) == 3 && os.Args[1] == "--write-options" {
		path, err := writeOptions(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "protoc-gen-go-kafka:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stdout, "wrote", path)
		os.Exit(0)
	}
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: protoc-gen-go-kafka (as a protoc or buf plugin, reading a request on stdin)\n"+
			"       protoc-gen-go-kafka --write-options PROTO_ROOT\n"+
			"       protoc-gen-go-kafka --version")
		os.Exit(2)
	}
	var flags flag.FlagSet
	protogen.Options{ParamFunc: flags.Set}.Run(generate)
}

// writeOptions writes options.proto under root, at kgrpcproto.OptionsPath,
// and returns the path written.
func writeOptions(root string) (string, error) {
	b, err := kgrpcproto.FS.ReadFile(kgrpcproto.OptionsPath)
	if err != nil {
		return "", err
	}
	path := filepath.Join(root, filepath.FromSlash(kgrpcproto.OptionsPath))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, b, 0o644)
}
