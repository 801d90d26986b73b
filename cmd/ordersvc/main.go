// Command ordersvc serves the orders service (order creation with stock
// reservation, history, status flow) over Kafka, for deployments with one
// process per service. Instances started with the same brokers share the
// work as one consumer group.
//
//	ordersvc --brokers kafka:9092 --auth-secret "$SECRET" --db postgres://... (or a SQLite path)
//
// Flags (each with a KGRPC_ variable; the flag wins): the shared ones of
// every deployable (see --help), and --db (KGRPC_DB), --http-addr
// (KGRPC_HTTP_ADDR, /healthz and /readyz), --reply-partition
// (KGRPC_REPLY_PARTITION, for its calls to productsvc), --recover-after
// (KGRPC_RECOVER_AFTER, default 30s: when the stock of an order attempt that
// crashed or failed before storing its order is given back). SIGINT or SIGTERM drains
// in-flight calls and stops.
package main

import (
	"context"
	"flag"
	"os"
	"sync/atomic"
	"time"

	"github.com/kgrpc/platform/internal/app"
	"github.com/kgrpc/platform/ordersvc"
)

func main() {
	var (
		db, httpAddr   string
		recoverAfter   time.Duration
		replyPartition int
	)
	app.Main("ordersvc", os.Args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&db, "db", app.Env("KGRPC_DB", "./data/orders.db"), "database: a SQLite file path, or a PostgreSQL URL postgres://user:password@host:5432/db (KGRPC_DB)")
		app.HideSecret(fs, "db", "KGRPC_DB") // a URL may hold a password
		fs.StringVar(&httpAddr, "http-addr", app.Env("KGRPC_HTTP_ADDR", ":9090"), "address of /healthz and /readyz (KGRPC_HTTP_ADDR)")
		app.DurationVar(fs, &recoverAfter, "recover-after", "KGRPC_RECOVER_AFTER", ordersvc.DefaultRecoverAfter,
			"release the stock of an order attempt that stored no order (it crashed or failed) this long after it began; must exceed the 10s call timeout plus clock skew (KGRPC_RECOVER_AFTER)")
		app.IntVar(fs, &replyPartition, "reply-partition", "KGRPC_REPLY_PARTITION", -1, app.ReplyPartitionUsage)
	}, func(ctx context.Context, c app.Common) error {
		c.PinReplyPartition(replyPartition)
		var ready atomic.Bool
		return app.RunWithHealth(ctx, httpAddr, &ready, c.Logger, func(ctx context.Context) error {
			return app.RunOrders(ctx, c, app.OrdersConfig{DB: db, RecoverAfter: recoverAfter, Ready: func() { ready.Store(true) }})
		})
	})
}
