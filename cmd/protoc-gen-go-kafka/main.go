// Command protoc-gen-go-kafka is a protoc plugin that generates the Kafka
// transport glue of github.com/kgrpc/platform/kafkatransport for the services
// and event messages of a protobuf file: request topics, partition-key
// functions, one-line client and server constructors, and typed event
// publishers and subscribers.
//
// It reads the custom options of kgrpc/kafka/v1/options.proto and expects
// protoc-gen-go and protoc-gen-go-grpc output in the same Go package. Run it
// through buf with paths=source_relative, next to those plugins.
package main

import (
	"flag"
	"fmt"
	"os"

	"google.golang.org/protobuf/compiler/protogen"
)

// version is the plugin version written into every generated file's header.
const version = "v0.1.0"

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Fprintln(os.Stdout, "protoc-gen-go-kafka", version)
		os.Exit(0)
	}
	var flags flag.FlagSet
	protogen.Options{ParamFunc: flags.Set}.Run(generate)
}
