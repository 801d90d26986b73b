// Command devkafka runs an embedded, single-broker Kafka (kfake, through
// internal/embedkafka) for local development: point services, the gateway or
// `KAFKA_BROKERS=127.0.0.1:9092 go test ./...` at it instead of installing
// Apache Kafka.
//
// Usage:
//
//	devkafka [--addr 127.0.0.1:9092] [--data-dir DIR] [--partitions 1] [--log-level info]
//
// Every flag can also come from the environment: KGRPC_ADDR, KGRPC_DATA_DIR,
// KGRPC_ADVERTISED_HOST, KGRPC_PARTITIONS, KGRPC_LOG_LEVEL (or, when unset,
// the DEVKAFKA_ names it read first); flags win. With a
// data directory the broker's topics, records and committed offsets survive
// restarts. SIGINT or SIGTERM stops the broker gracefully, writing its state to
// the data directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/kgrpc/platform/internal/cli"
	"github.com/kgrpc/platform/internal/embedkafka"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "devkafka:", err)
		os.Exit(1)
	}
}

// run parses args (with defaults from env), starts the broker, logs to
// stderr where it listens and serves until ctx is done. ready, when not nil,
// is told the broker's address once it accepts connections.
func run(ctx context.Context, args []string, env cli.Lookup, stderr io.Writer, ready func(addr string)) error {
	cfg, level, err := parseFlags(args, env, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger = logger.With("component", "kfake")
	err = embedkafka.Run(ctx, cfg, func(b *embedkafka.Broker) {
		logger.Info("devkafka listening", "addr", b.Addr(), "data_dir", cfg.DataDir, "partitions", cfg.Partitions)
		if ready != nil {
			ready(b.Addr())
		}
	})
	if err != nil {
		return err
	}
	logger.Info("devkafka stopped")
	return nil
}

// parseFlags reads the command line, taking defaults from the KGRPC_
// variables (KGRPC_ADDR, KGRPC_DATA_DIR, KGRPC_ADVERTISED_HOST,
// KGRPC_PARTITIONS, KGRPC_LOG_LEVEL) or, when those are unset, the DEVKAFKA_
// ones this command read first.
func parseFlags(args []string, env cli.Lookup, stderr io.Writer) (embedkafka.Config, slog.Level, error) {
	var cfg embedkafka.Config
	var level string
	flags := []cli.Flag{
		{Name: "addr", Value: &cfg.Addr, Default: "127.0.0.1:9092", Usage: "listen host:port"},
		{Name: "data-dir", Value: &cfg.DataDir, Usage: "directory that keeps topics, records and offsets across restarts; empty keeps them in memory"},
		{Name: "advertised-host", Value: &cfg.AdvertisedHost, Usage: "host advertised to clients; default the listen host, or 127.0.0.1 for 0.0.0.0"},
		{Name: "partitions", Value: &cfg.Partitions, Default: strconv.Itoa(embedkafka.DefaultPartitions),
			Usage: "partition count of auto-created topics and of CreateTopics asking for the default"},
		{Name: "log-level", Value: &level, Default: "info", Usage: "log level: debug (every request), info, warn, error"},
	}
	for i := range flags {
		flags[i] = flags[i].WithAlias("DEVKAFKA_")
	}
	if err := cli.Parse("devkafka", flags, args, env, stderr); err != nil {
		return embedkafka.Config{}, 0, err
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return embedkafka.Config{}, 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return cfg, l, nil
}
