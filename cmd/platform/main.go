// Command platform runs the whole shop in one process: an embedded
// Kafka-protocol broker persisted in the data directory (unless --brokers
// names a real cluster), the users, products and orders services on SQLite
// files in the data directory, and the REST gateway.
//
// Every flag has an environment variable; a flag given on the command line
// wins over its variable.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kgrpc/platform/internal/app"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/embedkafka"
	"github.com/kgrpc/platform/kafkatransport"
)

type options struct {
	httpAddr      string
	dataDir       string
	brokers       string
	adminEmail    string
	adminPassword string
	authSecret    string
	noDemo        bool
	logLevel      string
	topicPrefix   string

	// listening, when set, is called with the API's address once it
	// accepts requests (for tests).
	listening func(addr string)
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "platform:", err)
		os.Exit(2)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(opts.logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "platform: bad --log-level %q: %v\n", opts.logLevel, err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts, logger); err != nil {
		logger.Error("platform failed", "err", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("platform", flag.ContinueOnError)
	fs.StringVar(&o.httpAddr, "http-addr", env("PLATFORM_HTTP_ADDR", "127.0.0.1:8080"), "REST API listen address (PLATFORM_HTTP_ADDR)")
	fs.StringVar(&o.dataDir, "data-dir", env("PLATFORM_DATA_DIR", "./data"), "directory for the databases, the embedded broker's log and the generated auth secret (PLATFORM_DATA_DIR)")
	fs.StringVar(&o.brokers, "brokers", env("PLATFORM_BROKERS", ""), "Kafka bootstrap servers; empty runs the embedded broker (PLATFORM_BROKERS)")
	fs.StringVar(&o.adminEmail, "admin-email", env("PLATFORM_ADMIN_EMAIL", ""), "create or promote this admin account at start (PLATFORM_ADMIN_EMAIL)")
	fs.StringVar(&o.adminPassword, "admin-password", env("PLATFORM_ADMIN_PASSWORD", ""), "password of a newly created admin account (PLATFORM_ADMIN_PASSWORD)")
	fs.StringVar(&o.authSecret, "auth-secret", env("PLATFORM_AUTH_SECRET", ""), "token signing secret, at least 16 bytes; generated and kept in the data directory when empty (PLATFORM_AUTH_SECRET)")
	app.HideSecret(fs, "admin-password", "PLATFORM_ADMIN_PASSWORD")
	app.HideSecret(fs, "auth-secret", "PLATFORM_AUTH_SECRET")
	noDemo := env("PLATFORM_NO_DEMO", "") != ""
	fs.BoolVar(&o.noDemo, "no-demo", noDemo, "do not load the demo catalog into a new data directory (PLATFORM_NO_DEMO)")
	fs.StringVar(&o.topicPrefix, "topic-prefix", env("PLATFORM_TOPIC_PREFIX", ""), "prefix of every Kafka topic and consumer group, to share a cluster (PLATFORM_TOPIC_PREFIX)")
	fs.StringVar(&o.logLevel, "log-level", env("PLATFORM_LOG_LEVEL", "info"), "debug, info, warn or error (PLATFORM_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if (o.adminEmail == "") != (o.adminPassword == "") {
		return o, errors.New("--admin-email and --admin-password go together")
	}
	return o, nil
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	marker := filepath.Join(o.dataDir, ".initialized")
	_, statErr := os.Stat(marker)
	fresh := errors.Is(statErr, fs.ErrNotExist)

	secret, err := loadSecret(o.authSecret, filepath.Join(o.dataDir, "auth-secret"))
	if err != nil {
		return err
	}
	signer, err := auth.NewSigner(secret)
	if err != nil {
		return err
	}

	brokers := o.brokers
	if brokers == "" {
		b, err := embedkafka.Start(embedkafka.Config{
			Addr:    "127.0.0.1:0",
			DataDir: filepath.Join(o.dataDir, "kafka"),
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
		logger.Info("embedded Kafka broker running", "addr", brokers, "data_dir", filepath.Join(o.dataDir, "kafka"))
	}

	common := app.Common{Brokers: brokers, Signer: signer, Logger: logger}
	if o.topicPrefix != "" {
		common.Kafka = append(common.Kafka, kafkatransport.WithTopicPrefix(o.topicPrefix))
	}
	usersDB, productsDB, ordersDB := app.DBPaths(o.dataDir)
	start := time.Now()
	err = runUnits(ctx, logger,
		func(ctx context.Context) error {
			return app.RunUsers(ctx, common, app.UsersConfig{DB: usersDB,
				Admin: app.AdminSeed{Email: o.adminEmail, Password: o.adminPassword}})
		},
		func(ctx context.Context) error {
			return app.RunProducts(ctx, common, app.ProductsConfig{DB: productsDB, SeedDemo: fresh && !o.noDemo})
		},
		func(ctx context.Context) error {
			return app.RunOrders(ctx, common, app.OrdersConfig{DB: ordersDB})
		},
		func(ctx context.Context) error {
			return app.RunGateway(ctx, common, app.GatewayConfig{HTTPAddr: o.httpAddr, Listening: func(addr string) {
				if fresh {
					_ = os.WriteFile(marker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
				}
				if o.listening != nil {
					o.listening(addr)
				}
				logger.Info("platform ready", "api", "http://"+addr, "openapi", "http://"+addr+"/openapi.json", "startup", time.Since(start).Round(time.Millisecond))
			}})
		},
	)
	logger.Info("platform stopped")
	return err
}

// runUnits runs the units until ctx ends or one fails, which stops the
// others.
func runUnits(ctx context.Context, logger *slog.Logger, units ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopLog := context.AfterFunc(ctx, func() { logger.Info("shutting down: draining in-flight work") })
	defer stopLog()
	errc := make(chan error, len(units))
	for _, u := range units {
		go func() { errc <- u(ctx) }()
	}
	var first error
	for range units {
		if err := <-errc; err != nil && first == nil {
			first = err
			logger.Error("unit failed; stopping the platform", "err", err)
			cancel()
		}
	}
	return first
}

// loadSecret returns the configured secret, or the one kept at path,
// generating and keeping a new one when there is none.
func loadSecret(configured, path string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil
	}
	b, err := os.ReadFile(path)
	if err == nil {
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read auth secret: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	s := hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("keep auth secret: %w", err)
	}
	return []byte(s), nil
}
