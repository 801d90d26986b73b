// Command productsvc serves the products service (catalog, search,
// inventory) over Kafka, and releases the stock of cancelled orders from
// their events, for deployments with one process per service. Instances
// started with the same brokers share the work as one consumer group.
//
//	productsvc --brokers kafka:9092 --auth-secret "$SECRET" --db postgres://... (or a SQLite path)
//
// Flags (each with a KGRPC_ variable; the flag wins): the shared ones of
// every deployable (see --help), and --db (KGRPC_DB), --http-addr
// (KGRPC_HTTP_ADDR, /healthz and /readyz), --seed-demo (KGRPC_SEED_DEMO,
// load the demo catalog into an empty store). SIGINT or SIGTERM drains
// in-flight calls and stops.
package main

import (
	"context"
	"flag"
	"os"
	"sync/atomic"

	"github.com/kgrpc/platform/internal/app"
)

func main() {
	var db, httpAddr string
	var seedDemo bool
	app.Main("productsvc", os.Args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&db, "db", app.Env("KGRPC_DB", "./data/products.db"), "database: a SQLite file path, or a PostgreSQL URL postgres://user:password@host:5432/db (KGRPC_DB)")
		app.HideSecret(fs, "db", "KGRPC_DB") // a URL may hold a password
		fs.StringVar(&httpAddr, "http-addr", app.Env("KGRPC_HTTP_ADDR", ":9090"), "address of /healthz and /readyz (KGRPC_HTTP_ADDR)")
		fs.BoolVar(&seedDemo, "seed-demo", app.Env("KGRPC_SEED_DEMO", "") == "true", "load the demo catalog into an empty store (KGRPC_SEED_DEMO=true)")
	}, func(ctx context.Context, c app.Common) error {
		var ready atomic.Bool
		return app.RunWithHealth(ctx, httpAddr, &ready, c.Logger, func(ctx context.Context) error {
			return app.RunProducts(ctx, c, app.ProductsConfig{DB: db, SeedDemo: seedDemo, Ready: func() { ready.Store(true) }})
		})
	})
}
