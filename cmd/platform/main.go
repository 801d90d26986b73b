// Command platform runs the whole shop in one process: an embedded
// Kafka-protocol broker persisted in the data directory (unless --brokers
// names a real cluster), the users, products and orders services on SQLite
// files in the data directory, and the REST gateway.
//
// Every flag has a KGRPC_ environment variable (--data-dir reads
// KGRPC_DATA_DIR); the variables documented before KGRPC_ became the one
// prefix (PLATFORM_HTTP_ADDR, PLATFORM_DATA_DIR, PLATFORM_BROKERS,
// PLATFORM_ADMIN_EMAIL, PLATFORM_ADMIN_PASSWORD, PLATFORM_AUTH_SECRET (now
// refused with a message: per-unit keys, kept in <data-dir>/keys, replaced
// it),
// PLATFORM_NO_DEMO, PLATFORM_TOPIC_PREFIX, PLATFORM_LOG_LEVEL) are still
// read, and win when both are set. A flag given on the command line wins
// over any variable.
package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kgrpc/platform/internal/app"
	"github.com/kgrpc/platform/internal/cli"
	"github.com/kgrpc/platform/internal/telemetry"
	"github.com/kgrpc/platform/kafkatransport/embedkafka"
)

// platformFlags are cmd/platform's rows of the flag table. Each reads its
// KGRPC_ variable and, for the names documented before KGRPC_ was the one
// prefix, its PLATFORM_ alias, which wins when both are set. Its instance
// id is random unless set, as before it had the flag.
var platformFlags = []string{
	"http-addr=127.0.0.1:8080", "data-dir", "brokers", "admin-email", "admin-password", "auth-secret",
	"no-demo", "topic-prefix", "log-level", "log-format=text", "max-stream-duration", "max-streams-per-user",
	"max-inflight-per-service", "instance-id=", "partitions", "kafka-config", "kafka-config-file", "idempotency-ttl", "token-ttl", "cors-origins", "auth-rate-limit", "call-retention",
	"pprof-addr",
}

// BrokerAddrFile is the file in the data directory that holds the embedded
// broker's address while the platform runs (kgrpc --data-dir reads it).
const BrokerAddrFile = "broker-addr"

// aliased are the flags whose PLATFORM_ variables were documented.
var aliased = map[string]bool{"http-addr": true, "data-dir": true, "brokers": true, "admin-email": true,
	"admin-password": true, "auth-secret": true, "no-demo": true, "topic-prefix": true, "log-level": true}

// options are the platform's settings, and a hook for tests.
type options struct {
	app.Settings

	// listening, when set, is called with the API's address once it
	// accepts requests (for tests).
	listening func(addr string)
	// broker, when set, is called with the bootstrap address of the
	// broker in use (for tests).
	broker func(addr string)
}

// flagTable binds the platform's flags to s.
func flagTable(s *app.Settings) []cli.Flag {
	flags := s.Flags(platformFlags...)
	for i, f := range flags {
		if aliased[f.Name] {
			flags[i] = f.WithAlias("PLATFORM_")
		}
	}
	return flags
}

func main() {
	var o options
	cli.Main("platform", flagTable(&o.Settings), os.LookupEnv, func(ctx context.Context) error {
		if o.AuthSecret != "" {
			return app.ErrAuthSecret
		}
		if (o.AdminEmail == "") != (o.AdminPassword == "") {
			return cli.Usagef("--admin-email and --admin-password go together")
		}
		logger, err := o.Logger()
		if err != nil {
			return err
		}
		if err := run(ctx, o, logger); err != nil {
			if errors.As(err, new(cli.UsageError)) {
				return err // exit code 2, as for a bad flag
			}
			logger.Error("platform failed", "err", err)
			return cli.Logged(err)
		}
		return nil
	})
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	common, err := o.CommonWith(logger) // bad Kafka settings fail before anything starts
	if err != nil {
		return err
	}
	gwCfg, err := o.Gateway() // so do bad gateway settings
	if err != nil {
		return err
	}
	if common.Telemetry, err = telemetry.New(true, logger); err != nil { // so do bad OTEL_* settings
		return cli.UsageError{Err: err}
	}
	stopProfiles, err := app.ServeProfiles(ctx, o.PprofAddr, logger)
	if err != nil {
		return cli.UsageError{Err: err}
	}
	defer stopProfiles()
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	unlock, err := lockDataDir(o.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	marker := filepath.Join(o.DataDir, ".initialized")
	_, statErr := os.Stat(marker)
	fresh := errors.Is(statErr, fs.ErrNotExist)

	keys, err := app.EnsureKeys(filepath.Join(o.DataDir, "keys"), logger)
	if err != nil {
		return fmt.Errorf("unit keys: %w", err)
	}
	if _, err := os.Stat(filepath.Join(o.DataDir, "auth-secret")); err == nil {
		logger.Warn("the auth-secret file in the data directory is no longer used (per-unit keys in keys/ replaced it); delete it")
	}

	brokers := o.Brokers
	if brokers == "" {
		b, err := embedkafka.Start(embedkafka.Config{
			Addr:    "127.0.0.1:0",
			DataDir: filepath.Join(o.DataDir, "kafka"),
			Logger:  logger.With("unit", "embedkafka"),
		})
		if err != nil {
			return fmt.Errorf("start embedded broker: %w", err)
		}
		defer func() {
			if err := b.Close(); err != nil {
				logger.Warn("close embedded broker", "err", err)
			}
		}()
		brokers = b.Addr()
		logger.Info("embedded Kafka broker running", "addr", brokers, "data_dir", filepath.Join(o.DataDir, "kafka"))
		// For tools on this data directory: kgrpc --data-dir.
		addrFile := filepath.Join(o.DataDir, BrokerAddrFile)
		if err := os.WriteFile(addrFile, []byte(brokers+"\n"), 0o644); err != nil {
			return fmt.Errorf("write the broker's address: %w", err)
		}
		defer os.Remove(addrFile) // the broker is gone with this process
	}

	common.Brokers, common.Trust = brokers, keys
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := common.Telemetry.Shutdown(sctx); err != nil {
			logger.Warn("export the last spans", "err", err)
		}
	}()
	if o.broker != nil {
		o.broker(brokers)
	}
	usersDB, productsDB, ordersDB := app.DBPaths(o.DataDir)
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	// "platform ready" waits for the services to consume their requests,
	// not only for the gateway to listen.
	ready := []*app.Ready{new(app.Ready), new(app.Ready), new(app.Ready)}
	stopLog := context.AfterFunc(gctx, func() { logger.Info("shutting down: draining in-flight work") })
	defer stopLog()
	g.Go(func() error {
		return app.RunUsers(gctx, common, app.UsersConfig{ServiceConfig: app.ServiceConfig{DB: usersDB, IdempotencyTTL: o.IdempotencyTTL, Ready: ready[0]},
			Admin: app.AdminSeed{Email: o.AdminEmail, Password: o.AdminPassword}, TokenTTL: o.TokenTTL})
	})
	g.Go(func() error {
		return app.RunProducts(gctx, common, app.ProductsConfig{ServiceConfig: app.ServiceConfig{DB: productsDB, IdempotencyTTL: o.IdempotencyTTL, Ready: ready[1]}, SeedDemo: fresh && !o.NoDemo})
	})
	g.Go(func() error {
		return app.RunOrders(gctx, common, app.OrdersConfig{ServiceConfig: app.ServiceConfig{DB: ordersDB, IdempotencyTTL: o.IdempotencyTTL, Ready: ready[2]}})
	})
	g.Go(func() error {
		gwCfg.Listening = func(addr string) {
			if fresh {
				_ = os.WriteFile(marker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
			}
			if o.listening != nil {
				o.listening(addr)
			}
			go func() {
				for !allSet(ready) {
					select {
					case <-gctx.Done():
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
				logger.Info("platform ready", "api", "http://"+addr, "openapi", "http://"+addr+"/openapi.json", "startup", time.Since(start).Round(time.Millisecond))
			}()
		}
		return app.RunGateway(gctx, common, gwCfg)
	})
	err = g.Wait()
	logger.Info("platform stopped")
	return err
}

// allSet reports whether every one of rs is set.
func allSet(rs []*app.Ready) bool {
	for _, r := range rs {
		if !r.IsSet() {
			return false
		}
	}
	return true
}
