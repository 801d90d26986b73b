// Command gateway serves the shop's REST API and calls the services over
// Kafka, for deployments with one process per service. Any number of
// gateways can run: each reads its own reply partition by direct
// assignment.
//
//	gateway --brokers kafka:9092 --unit-key keys/gateway.key --keyring keys/keyring.json --http-addr :8080
//
// Flags (each with a KGRPC_ variable; the flag wins): the shared ones of
// every deployable (see --help), and --http-addr (KGRPC_HTTP_ADDR),
// --request-timeout (KGRPC_REQUEST_TIMEOUT), --reply-partition
// (KGRPC_REPLY_PARTITION: -1 picks one at random; a StatefulSet ordinal keeps
// gateways off each other's partitions). SIGINT or SIGTERM finishes
// in-flight requests and stops.
package main

import "github.com/kgrpc/platform/internal/app"

func main() { app.Main(app.Gateway) }
