// Command usersvc serves the users service (registration, login, profiles)
// over Kafka, for deployments with one process per service. Instances
// started with the same brokers share the work as one consumer group.
//
//	usersvc --brokers kafka:9092 --auth-secret "$SECRET" --db postgres://... (or a SQLite path)
//
// Flags (each with a KGRPC_ variable; the flag wins): the shared ones of
// every deployable (--brokers, --auth-secret, --instance-id, --topic-prefix,
// --kafka-config, --log-level, --log-format; see --help), and --db
// (KGRPC_DB), --http-addr (KGRPC_HTTP_ADDR, /healthz and /readyz),
// --admin-email and --admin-password (KGRPC_ADMIN_EMAIL,
// KGRPC_ADMIN_PASSWORD). SIGINT or SIGTERM drains in-flight calls and stops.
package main

import (
	"context"
	"flag"
	"os"
	"sync/atomic"

	"github.com/kgrpc/platform/internal/app"
)

func main() {
	var db, httpAddr, adminEmail, adminPassword string
	app.Main("usersvc", os.Args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&db, "db", app.Env("KGRPC_DB", "./data/users.db"), "database: a SQLite file path, or a PostgreSQL URL postgres://user:password@host:5432/db (KGRPC_DB)")
		app.HideSecret(fs, "db", "KGRPC_DB") // a URL may hold a password
		fs.StringVar(&httpAddr, "http-addr", app.Env("KGRPC_HTTP_ADDR", ":9090"), "address of /healthz and /readyz (KGRPC_HTTP_ADDR)")
		fs.StringVar(&adminEmail, "admin-email", app.Env("KGRPC_ADMIN_EMAIL", ""), "create or promote this admin account at start (KGRPC_ADMIN_EMAIL)")
		fs.StringVar(&adminPassword, "admin-password", app.Env("KGRPC_ADMIN_PASSWORD", ""), "password of a newly created admin account (KGRPC_ADMIN_PASSWORD)")
		app.HideSecret(fs, "admin-password", "KGRPC_ADMIN_PASSWORD")
	}, func(ctx context.Context, c app.Common) error {
		var ready atomic.Bool
		return app.RunWithHealth(ctx, httpAddr, &ready, c.Logger, func(ctx context.Context) error {
			return app.RunUsers(ctx, c, app.UsersConfig{DB: db, Ready: func() { ready.Store(true) },
				Admin: app.AdminSeed{Email: adminEmail, Password: adminPassword}})
		})
	})
}
