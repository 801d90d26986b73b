// Command gateway serves the shop's REST API and calls the services over
// Kafka, for deployments with one process per service. Any number of
// gateways can run: each reads its own reply partition by direct
// assignment.
//
//	gateway --brokers kafka:9092 --auth-secret "$SECRET" --http-addr :8080
//
// Flags (each with a KGRPC_ variable; the flag wins): the shared ones of
// every deployable (see --help), and --http-addr (KGRPC_HTTP_ADDR),
// --request-timeout (KGRPC_REQUEST_TIMEOUT), --reply-partition
// (KGRPC_REPLY_PARTITION: -1 picks one at random; a StatefulSet ordinal keeps
// gateways off each other's partitions). SIGINT or SIGTERM finishes
// in-flight requests and stops.
package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/kgrpc/platform/internal/app"
)

func main() {
	var httpAddr string
	var timeout time.Duration
	var replyPartition int
	app.Main("gateway", os.Args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&httpAddr, "http-addr", app.Env("KGRPC_HTTP_ADDR", ":8080"), "REST API listen address (KGRPC_HTTP_ADDR)")
		app.DurationVar(fs, &timeout, "request-timeout", "KGRPC_REQUEST_TIMEOUT", 10*time.Second, "deadline of each API request, Kafka calls included (KGRPC_REQUEST_TIMEOUT)")
		app.IntVar(fs, &replyPartition, "reply-partition", "KGRPC_REPLY_PARTITION", -1, app.ReplyPartitionUsage)
	}, func(ctx context.Context, c app.Common) error {
		c.PinReplyPartition(replyPartition)
		return app.RunGateway(ctx, c, app.GatewayConfig{HTTPAddr: httpAddr, RequestTimeout: timeout})
	})
}
