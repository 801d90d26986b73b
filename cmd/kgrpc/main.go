// Command kgrpc is grpcurl for services served over Kafka with
// kafkatransport: it lists and describes them through the standard server
// reflection service each unit serves on its own topic
// (kafkatransport.ReflectionSpec), calls their methods with JSON, tails
// event topics and lists and replays dead letters. It needs no local
// protos.
//
//	kgrpc [flags] list                                  services, one per line
//	kgrpc [flags] describe SYMBOL                       a service, method or message
//	kgrpc [flags] call SERVICE/METHOD [-d JSON] [-H k:v]...
//	kgrpc [flags] tail TOPIC [--from-beginning] [-n N]  events as JSON lines
//	kgrpc [flags] dlq list TOPIC [--partition P]        the dead letters of TOPIC (TOPIC.dlq)
//	kgrpc [flags] dlq replay TOPIC [--partition P [--offset N]]  send them back to their source topic
//
// Flags (kgrpc --help lists them): --brokers (KGRPC_BROKERS or
// KAFKA_BROKERS, default 127.0.0.1:9092), --topic-prefix
// (KGRPC_TOPIC_PREFIX), --unit-key and --keyring (KGRPC_UNIT_KEY,
// KGRPC_KEYRING: a unit's key and the keyring, when the cluster's records
// are sealed: kgrpc calls as that unit), --timeout, and --data-dir DIR
// (KGRPC_DATA_DIR) for a running cmd/platform: its broker, and the
// gateway's key.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kgrpc/platform/internal/kgrpccli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := kgrpccli.Run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kgrpc:", err)
		var u kgrpccli.UsageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
