// Command productsvc serves the products service (catalog, search,
// inventory) over Kafka, and releases the stock of cancelled orders from
// their events, for deployments with one process per service. Instances
// started with the same brokers share the work as one consumer group.
//
//	productsvc --brokers kafka:9092 --unit-key keys/productsvc.key --keyring keys/keyring.json --db postgres://... (or a SQLite path)
//
// Flags (each with a KGRPC_ variable; the flag wins): the shared ones of
// every deployable (see --help), and --db (KGRPC_DB), --http-addr
// (KGRPC_HTTP_ADDR, /healthz and /readyz), --seed-demo (KGRPC_SEED_DEMO,
// load the demo catalog into an empty store). SIGINT or SIGTERM drains
// in-flight calls and stops.
package main

import "github.com/kgrpc/platform/internal/app"

func main() { app.Main(app.Products) }
