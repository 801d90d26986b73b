// Command ordersvc serves the orders service (order creation with stock
// reservation, history, status flow) over Kafka, for deployments with one
// process per service. Instances started with the same brokers share the
// work as one consumer group.
//
//	ordersvc --brokers kafka:9092 --unit-key keys/ordersvc.key --keyring keys/keyring.json --db postgres://... (or a SQLite path)
//
// Flags (each with a KGRPC_ variable; the flag wins): the shared ones of
// every deployable (see --help), and --db (KGRPC_DB), --http-addr
// (KGRPC_HTTP_ADDR, /healthz and /readyz), --reply-partition
// (KGRPC_REPLY_PARTITION, for its calls to productsvc), --recover-after
// (KGRPC_RECOVER_AFTER, default 30s: when the stock of an order attempt that
// crashed or failed before storing its order is given back). SIGINT or SIGTERM drains
// in-flight calls and stops.
package main

import "github.com/kgrpc/platform/internal/app"

func main() { app.Main(app.Orders) }
